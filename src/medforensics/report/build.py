"""Write one input's reports: evidence JSON, HTML, PDF, overlay PNG and DICOM results.

``write_reports`` is what ``scan --report`` and ``report`` call for every analysed volume. One
part that fails (the PDF, the DICOM objects, a picture) becomes a note in the others; only an
error writing into the output folder itself is raised.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medforensics.detect.base import Detector
from medforensics.detect.types import Detection
from medforensics.explain.maps import full_map, heat_baseline, peak, shown_heat
from medforensics.explain.window import display_window
from medforensics.io.types import ImageVolume
from medforensics.report.evidence import (
    Picture,
    ReportContent,
    Timing,
    collect_evidence,
    utc_now,
)
from medforensics.scan import ScanResult

#: format tag of the evidence JSON
REPORT_FORMAT = "medforensics-report/1"
#: overlay drawing: heat on the display scale below FLOOR is not drawn
ALPHA, FLOOR = 0.45, 0.2
#: findings that get a crop, and the size pictures are shown at (screen pixels)
MAX_CROPS = 4
OVERLAY_SHOWN = 384
STRIP_SHOWN = 160
#: scores that differ by more than this from the JSON's (rounded to 6 decimals) are reported
SCORE_TOLERANCE = 5e-6
_KNOWN_SUFFIXES = (".nii.gz", ".nii", ".dcm", ".dicom", ".zip", ".png", ".jpg", ".jpeg", ".tif")


@dataclass
class ReportFiles:
    """What ``write_reports`` wrote for one input (paths inside ``out_dir``)."""

    json: Path
    html: Path | None
    pdf: Path | None
    overlay_png: Path | None
    dicom: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class TimedDetector(Detector):
    """Wraps a detector and records when its last ``detect`` call started and finished (UTC)."""

    name: ClassVar[str] = "timed"

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.timing = Timing()

    def detect(self, volume: ImageVolume) -> Detection:
        self.timing = Timing(analysis_started=utc_now())
        try:
            return self.inner.detect(volume)
        finally:
            self.timing.analysis_finished = utc_now()

    def supports(self, volume: ImageVolume) -> bool:
        return self.inner.supports(volume)

    def describe(self) -> dict[str, object]:
        return self.inner.describe()


def safe_name(text: str, limit: int = 80) -> str:
    """``text`` reduced to letters, digits, ``.``, ``_`` and ``-`` (others become ``_``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return cleaned[:limit] or "input"


def report_stem(volume: ImageVolume) -> str:
    """A file-system-safe stem for ``volume``'s reports.

    The input's name without its usual suffix; for a folder or archive (which may hold several
    series) the tail of the SeriesInstanceUID is added (and the part, for a series analysed in
    parts), or the file name for non-DICOM members.
    """
    source = Path(volume.input.rstrip("/\\") or volume.input)
    name = source.name or "input"
    for suffix in _KNOWN_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    stem = safe_name(name)
    from_container = source.is_dir() or any(ref.member for ref in volume.slices)
    if from_container:
        if volume.series_uid:
            stem += "_" + safe_name(volume.series_uid)[-16:]
        elif volume.source_files:
            stem += "_" + safe_name(volume.source_files[0].stem, 40)
    part = volume.attributes.get("SeriesPart", "")
    if part:  # a series or file analysed in parts (geometries, stacks): one report each
        stem += "_part" + part.split(" ", 1)[0]
    return stem


def _identity(volume: ImageVolume) -> list[Any]:
    files = volume.source_files
    return [
        volume.input,
        volume.series_uid,
        str(files[0]) if files else None,
        volume.attributes.get("SeriesPart"),
    ]


def unique_stem(out_dir: Path, stem: str, volume: ImageVolume) -> str:
    """``stem``, or ``stem-2``, ``stem-3``... when another input's reports already use it."""
    for attempt in range(1, 1000):
        candidate = stem if attempt == 1 else f"{stem}-{attempt}"
        existing = out_dir / f"{candidate}.json"
        if not existing.exists():
            return candidate
        try:
            previous = json.loads(existing.read_text()).get("identity")
        except (OSError, ValueError, AttributeError):
            previous = None
        if previous == _identity(volume):  # the same input again: overwrite its reports
            return candidate
    return f"{stem}-{os.getpid()}"


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file, so no half-written file is left."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as handle:  # created with the user's umask, like any output
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _finding_rows(result: ScanResult) -> list[dict[str, Any]]:
    return [
        {
            "number": number,
            "kind": f.kind,
            "score": f.score,
            "slice": f.slice,
            "row": f.row,
            "col": f.col,
            "radius": f.radius,
            "sop_instance_uid": f.sop_instance_uid,
            "detail": f.detail,
        }
        for number, f in enumerate(result.findings, start=1)
    ]


def comparison(previous: Mapping[str, Any], result: ScanResult) -> tuple[dict[str, Any], list[str]]:
    """How a regenerated result compares with the one in the JSON it came from."""
    old_score = previous.get("score")
    notes = []
    same_score = (
        old_score is not None
        and result.score is not None
        and abs(float(old_score) - result.score) <= SCORE_TOLERANCE
    )
    if not same_score:
        notes.append(
            f"regenerated score {result.score} differs from the score in the JSON ({old_score})"
        )
    if previous.get("verdict") != result.verdict:
        notes.append(
            f"regenerated verdict '{result.verdict}' differs from the JSON's "
            f"'{previous.get('verdict')}'"
        )
    old_findings = previous.get("findings") or []
    if len(old_findings) != len(result.findings):
        notes.append(
            f"regeneration found {len(result.findings)} finding(s); the JSON lists "
            f"{len(old_findings)}"
        )
    record = {
        "json_score": old_score,
        "json_verdict": previous.get("verdict"),
        "json_detector": previous.get("detector"),
        "json_findings": len(old_findings),
        "regenerated_score": result.score,
        "regenerated_verdict": result.verdict,
        "score_matches": same_score,
    }
    return record, notes


class _Pictures:
    """Makes a report's pictures from one volume and its full-resolution map."""

    def __init__(self, volume: ImageVolume, heat: np.ndarray, baseline: float) -> None:
        self.volume = volume
        self.heat = heat
        self.baseline = baseline
        self.window = display_window(volume)
        self._overlays: dict[int, np.ndarray] = {}

    def overlay(self, index: int) -> np.ndarray:
        """Slice ``index`` with the heat overlaid, at image resolution, no rings."""
        if index not in self._overlays:
            from medforensics.explain.render import slice_overlay

            shown = shown_heat(self.heat[index], self.baseline)
            self._overlays[index] = slice_overlay(
                self.volume.pixels[index], shown, self.window, alpha=ALPHA, floor=FLOOR
            )
        return self._overlays[index]

    @staticmethod
    def picture(rgb: np.ndarray, caption: str) -> Picture:
        from medforensics.explain.render import png_bytes

        return Picture(png_bytes(rgb), caption, int(rgb.shape[1]), int(rgb.shape[0]))

    def annotated(self, index: int, rows: Sequence[dict[str, Any]], caption: str) -> Picture:
        from medforensics.explain.render import enlarge, ring_findings

        base = self.overlay(index)
        big = enlarge(base, OVERLAY_SHOWN)
        scale = big.shape[0] / base.shape[0]
        rings = [
            (r["row"], r["col"], r["radius"])
            for r in rows
            if r["slice"] == index and r["radius"] > 0
        ]
        return self.picture(ring_findings(big, rings, scale), caption)

    def crops(self, rows: Sequence[dict[str, Any]]) -> list[Picture]:
        from medforensics.explain.render import finding_crop

        pictures = []
        for row in [r for r in rows if r["radius"] > 0][:MAX_CROPS]:
            if not 0 <= row["slice"] < self.volume.shape[0]:
                continue
            crop = finding_crop(self.overlay(row["slice"]), row["row"], row["col"], row["radius"])
            caption = (
                f"finding {row['number']}: {row['kind']} {row['score']:.3f}, slice "
                f"{row['slice']}, row {row['row']}, col {row['col']}, radius {row['radius']:g} px"
            )
            pictures.append(self.picture(crop, caption))
        return pictures

    def strip(self, rows: Sequence[dict[str, Any]]) -> list[Picture]:
        from PIL import Image

        from medforensics.explain.render import label, ring_findings, strip_indices

        per_slice = self.heat.reshape(self.heat.shape[0], -1).max(axis=1)
        pictures = []
        for index in strip_indices(per_slice.tolist()):
            rings = [
                (r["row"], r["col"], r["radius"])
                for r in rows
                if r["slice"] == index and r["radius"] > 0
            ]
            rgb = ring_findings(self.overlay(index), rings)
            thumb = Image.fromarray(rgb)
            thumb.thumbnail((STRIP_SHOWN, STRIP_SHOWN), Image.Resampling.LANCZOS)
            if thumb.width < STRIP_SHOWN // 2:
                factor = STRIP_SHOWN // max(thumb.width, thumb.height, 1)
                size = (thumb.width * factor, thumb.height * factor)
                thumb = thumb.resize(size, Image.Resampling.NEAREST)
            small = label(np.asarray(thumb), f"slice {index}")
            caption = f"slice {index} (map peak {per_slice[index]:.2f})"
            pictures.append(self.picture(small, caption))
        return pictures


def _saliency(
    detector: Detector, volume: ImageVolume, index: int, pictures: _Pictures
) -> tuple[Picture | None, str | None]:
    """A Grad-CAM panel for network detectors, or a note on why there is none."""
    described = detector.describe()
    has_network = "network" in described or "checkpoint" in described
    try:
        from medforensics.explain import cam
    except ImportError:
        if has_network:
            return None, (
                "no Grad-CAM panel: medforensics.explain.cam is not available in this "
                "installation; the map shown is the detector's own"
            )
        return None, None
    try:
        if not cam.explainable(detector, volume):
            return None, None
        saliency = cam.saliency(detector, volume, index)
    except ValueError as exc:  # NotExplainable and its kin: a reason for people
        return None, f"no Grad-CAM panel: {exc}"
    except Exception as exc:
        return None, f"no Grad-CAM panel: it failed ({type(exc).__name__}: {exc})"
    from medforensics.explain.render import enlarge, slice_overlay

    rgb = slice_overlay(volume.pixels[index], saliency, pictures.window, alpha=ALPHA, floor=FLOOR)
    caption = (
        f"Grad-CAM of {detector.name} on slice {index}: where the network looked, scaled to its "
        "own maximum; it is not a manipulation map"
    )
    return pictures.picture(enlarge(rgb, OVERLAY_SHOWN), caption), None


def _legend(dense: bool, baseline: float, stride: int) -> str:
    if dense:
        return (
            f"Colour shows the detector's own map (cells of {stride} px, interpolated): regions "
            f"more suspicious than this image's typical region (calibrated probability "
            f"{baseline:.3f}), from yellow just above {FLOOR:g} of the way to probability 1, to "
            "red at probability 1. Uncoloured regions are at or near the image's typical level."
        )
    return (
        "The detector gives no map: each finding is drawn as a disc of its radius at its score "
        f"(yellow at {FLOOR:g}, red at 1). Cyan rings mark findings."
    )


def _overlay_slice(heat: np.ndarray, result: ScanResult) -> int:
    top = peak(heat)
    if top is not None:
        return top[0]
    if result.findings:
        return int(np.clip(result.findings[0].slice, 0, heat.shape[0] - 1))
    return heat.shape[0] // 2


def write_reports(
    volume: ImageVolume,
    detection: Detection,
    result: ScanResult,
    detector: Detector,
    out_dir: Path,
    *,
    include_phi: bool = False,
    dicom: bool = True,
    timing: Timing | None = None,
    previous: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> ReportFiles:
    """Write the evidence JSON, HTML, PDF, overlay PNG and (DICOM inputs) DICOM results.

    Args:
        volume: the analysed image, pixels in memory.
        detection: the detector's full answer (with its map).
        result: the scan contract's result for it.
        detector: the detector that answered (its description goes into the report).
        out_dir: created if missing; file names come from ``report_stem``.
        include_phi: print patient identifiers (name, ID, birth date, accession, institution).
        dicom: also write DICOM SR / SEG / Secondary Capture / Encapsulated PDF for DICOM inputs.
        timing: when the analysis started and finished, if known.
        previous: the result this one regenerates (from a scan JSON), to compare with.
        notes: anything else the reader must be told.

    Raises:
        OSError: ``out_dir`` cannot be created or written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = unique_stem(out_dir, report_stem(volume), volume)
    report_notes = list(notes)
    files = ReportFiles(json=out_dir / f"{stem}.json", html=None, pdf=None, overlay_png=None)

    evidence = collect_evidence(
        volume, detection, result, detector, include_phi=include_phi, timing=timing
    )
    regenerated = None
    if previous is not None:
        regenerated, differences = comparison(previous, result)
        report_notes.extend(differences)

    heat = full_map(detection, volume.shape)
    dense = detection.anomaly_map is not None
    baseline = heat_baseline(heat, dense)
    index = _overlay_slice(heat, result)
    rows = _finding_rows(result)
    content = ReportContent(
        title=Path(volume.input.rstrip("/\\") or volume.input).name or volume.input,
        result=result.to_dict(),
        findings=rows,
        evidence=evidence,
        overlay_slice=index,
        heat_legend=_legend(dense, baseline, detection.map_stride),
        notes=report_notes,
    )
    overlay_clean: np.ndarray | None = None
    try:
        from medforensics.explain.render import colour_bar, png_bytes

        pictures = _Pictures(volume, heat, baseline)
        overlay_clean = pictures.overlay(index)
        files.overlay_png = write_atomic(out_dir / f"{stem}.overlay.png", png_bytes(overlay_clean))
        content.overlay = pictures.annotated(
            index,
            rows,
            f"slice {index} of {volume.shape[0]}, the most suspicious, window "
            f"{pictures.window[0]:g}/{pictures.window[1]:g} (centre/width)",
        )
        content.crops = pictures.crops(rows)
        if volume.is_volume:
            content.strip = pictures.strip(rows)
        content.colour_bar = pictures.picture(colour_bar(floor=FLOOR), "heat scale")
        content.saliency, saliency_note = _saliency(detector, volume, index, pictures)
        if saliency_note:
            report_notes.append(saliency_note)
    except OSError:
        raise
    except Exception as exc:
        report_notes.append(f"pictures could not be drawn ({type(exc).__name__}: {exc})")

    pdf_bytes = None
    try:
        from medforensics.report.pdf import render_pdf

        pdf_bytes = render_pdf(content)
        files.pdf = write_atomic(out_dir / f"{stem}.pdf", pdf_bytes)
    except OSError:
        raise
    except Exception as exc:
        report_notes.append(f"PDF report not written ({type(exc).__name__}: {exc})")

    if dicom and volume.kind.startswith("dicom") and overlay_clean is None:
        report_notes.append("DICOM results not written: the overlay could not be drawn")
    elif dicom and volume.kind.startswith("dicom") and overlay_clean is not None:
        files.dicom = _dicom_outputs(
            volume,
            result,
            heat,
            overlay_clean,
            index,
            pdf_bytes,
            out_dir / f"{stem}-dicom",
            detector,
            report_notes,
        )
        content.dicom_files = [f"{kind}: {path.name}" for kind, path in files.dicom.items()]

    try:
        from medforensics.report.html import render_html

        files.html = write_atomic(out_dir / f"{stem}.html", render_html(content).encode("utf-8"))
    except OSError:
        raise
    except Exception as exc:
        report_notes.append(f"HTML report not written ({type(exc).__name__}: {exc})")

    files.notes = report_notes
    top = peak(heat)
    payload = {
        "format": REPORT_FORMAT,
        "identity": _identity(volume),
        "result": result.to_dict(),
        "evidence": evidence.to_dict(),
        "map": {
            "source": f"detector map, {detection.map_stride} px cells" if dense else "findings",
            "display_baseline": round(baseline, 6),
            "display_floor": FLOOR,
            "peak": list(top) if top else None,
            "peak_value": round(float(heat[top]), 6) if top else None,
            "overlay_slice": index,
        },
        "regenerated": regenerated,
        "outputs": {
            "html": files.html.name if files.html else None,
            "pdf": files.pdf.name if files.pdf else None,
            "overlay_png": files.overlay_png.name if files.overlay_png else None,
            "dicom": {kind: str(path.relative_to(out_dir)) for kind, path in files.dicom.items()},
        },
        "notes": report_notes,
    }
    text = json.dumps(payload, indent=2, allow_nan=False, default=str) + "\n"
    write_atomic(files.json, text.encode("utf-8"))
    return files


def _dicom_outputs(
    volume: ImageVolume,
    result: ScanResult,
    heat: np.ndarray,
    overlay: np.ndarray,
    index: int,
    pdf_bytes: bytes | None,
    folder: Path,
    detector: Detector,
    notes: list[str],
) -> dict[str, Path]:
    try:
        from medforensics.report.dicom import DicomOutputError, write_dicom_outputs
    except ImportError as exc:
        notes.append(f"DICOM results not written: the DICOM output module is unavailable ({exc})")
        return {}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return write_dicom_outputs(
            volume, result, heat, overlay, index, pdf_bytes, folder, model=detector.describe()
        )
    except DicomOutputError as exc:
        notes.append(f"DICOM results not written: {exc}")
    except Exception as exc:  # a bug there must not cost the other reports
        notes.append(f"DICOM results not written ({type(exc).__name__}: {exc})")
    return {}
