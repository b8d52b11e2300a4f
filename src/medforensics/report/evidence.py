"""What a report must be able to prove: hashes, model, software, times, identifiers, limits.

Every value here is a plain JSON type, so the evidence file and the HTML/PDF reports show the
same facts. Hashes are SHA-256, hex, lower case; what each one covers is stated in
``HASH_DEFINITIONS`` and printed in every report.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import importlib.metadata as metadata
import json
import math
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medforensics.__about__ import __version__
from medforensics.detect.base import Detector
from medforensics.detect.types import Detection, OperatingPoint
from medforensics.io.types import ImageVolume, SliceRef
from medforensics.scan import ScanResult
from medforensics.utils.hashing import file_sha256

#: patient and visit identifiers, shown only with include_phi
PHI_FIELDS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName")
PHI_WITHHELD = "withheld (run with --include-phi)"

HASH_DEFINITIONS = {
    "file": "SHA-256 of each source file's bytes, as read from disk.",
    "pixels": (
        "SHA-256 of the decoded pixel array that was analysed: little-endian IEEE-754 float32, "
        "C order, shape (slices, rows, cols), slices in the order the report numbers them, after "
        "Rescale Slope/Intercept (Hounsfield units for CT; stored values otherwise; colour images "
        "as luminance)."
    ),
    "pixel_data": (
        "SHA-256 of the value of each DICOM file's Pixel Data element (7FE0,0010) exactly as "
        "stored: the native pixel bytes, or for compressed transfer syntaxes the encapsulated "
        "items (offset table and fragments with their item tags) without the sequence delimiter."
    ),
}

#: what the method can and cannot establish, in plain words (docs/detectors.md, README "Limits")
METHOD_LIMITS = (
    "The verdict is a statistical indication for review by a qualified person, not proof of "
    "manipulation or of authenticity. Only a valid digital signature over the original data can "
    "prove that an image is unchanged.",
    "Measured on CT from a scanner the models never saw, the pixel detectors separate authentic "
    "from simulated noise-matched edits only slightly better than chance: held-out AUC about 0.6 "
    "for the default detector (0.77 for copy-moves). Blunt edits (a flat fill, a lesion blurred "
    "away, an exact copy) and whole-scan re-gridding are found far more often. A low score does "
    "not clear an image; a high score does not convict it.",
    "The models were trained and calibrated on few patients and on simulated attacks only; real "
    "forgeries, scanners, reconstruction kernels, doses and post-processing unlike the training "
    "data can change both the detection rate and the false-alarm rate. Sites should re-fit the "
    "operating point on their own authentic scans (medforensics adapt).",
    "The map shows where the detector's evidence is strongest; it is not a segmentation of "
    "the edited region, and regions outside the imaged body are not assessed.",
    "Lossy compression, resampling, smoothing or re-quantisation after an edit (laundering) weaken "
    "the traces these detectors rely on.",
    "DICOM header checks flag inconsistencies that deserve a look; they are not proof that pixels "
    "changed.",
)

#: distributions whose versions a report records
SOFTWARE = ("numpy", "scipy", "torch", "monai", "pydicom", "highdicom", "reportlab", "Pillow")

#: model-card keys summarised in reports, in display order, with the label shown
CARD_KEYS = (
    ("model", "model"),
    ("network", "network"),
    ("checkpoint", "checkpoint"),
    ("checkpoint_sha256", "checkpoint SHA-256"),
    ("created", "created"),
    ("data", "training data"),
    ("trained_on", "training data"),
    ("attribution", "data attribution"),
    ("intended_use", "intended use"),
    ("limits", "limits stated by the model card"),
)
#: model-card sections holding measured figures, most relevant first
METRIC_KEYS = ("held_out_scanner", "cross_scanner", "held_out", "validation")
METRIC_FIELDS = ("auc", "fpr_at_threshold", "tpr_at_threshold", "top3_hit_rate")


def utc_now() -> str:
    """The current UTC time, ISO 8601 with seconds and ``+00:00``."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def pixel_array_sha256(pixels: np.ndarray) -> str:
    """SHA-256 of ``pixels`` as defined in ``HASH_DEFINITIONS["pixels"]``, one slice at a time."""
    digest = hashlib.sha256()
    for plane in pixels:
        digest.update(np.ascontiguousarray(plane, dtype="<f4").tobytes())
    return digest.hexdigest()


def pixel_data_sha256(path: str | Path) -> str | None:
    """SHA-256 of a DICOM file's Pixel Data value (``HASH_DEFINITIONS``); None when it has none."""
    import pydicom

    dataset = pydicom.dcmread(path, force=True)
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in dataset:
            value = dataset[keyword].value
            return hashlib.sha256(bytes(value)).hexdigest() if value is not None else None
    return None


@dataclass
class FileHash:
    """One source file of a volume and its hashes.

    Attributes:
        path: where it was read (a temporary folder for zip members: see ``member``).
        member: the zip member name, when it came from an archive.
        size: bytes.
        sha256: of the file.
        pixel_data_sha256: of its Pixel Data element (DICOM only).
        sop_instance_uid: the DICOM SOPInstanceUID, when there is one.
        problem: why a hash is missing, for people.
    """

    path: str
    member: str | None = None
    size: int | None = None
    sha256: str | None = None
    pixel_data_sha256: str | None = None
    sop_instance_uid: str | None = None
    problem: str | None = None


def hash_sources(volume: ImageVolume) -> list[FileHash]:
    """Hashes of every distinct source file of ``volume``, in slice order."""
    is_dicom = volume.kind.startswith("dicom")
    first_ref: dict[Path, SliceRef] = {}
    for ref in volume.slices:
        first_ref.setdefault(ref.source_file, ref)
    hashes = []
    for path, ref in first_ref.items():
        entry = FileHash(path=str(path), member=ref.member, sop_instance_uid=ref.sop_instance_uid)
        try:
            entry.size = path.stat().st_size
            entry.sha256 = file_sha256(path)
            if is_dicom:
                entry.pixel_data_sha256 = pixel_data_sha256(path)
        except OSError as exc:
            entry.problem = f"could not be read for hashing ({exc.strerror or exc})"
        except Exception as exc:  # a damaged element must not lose the other hashes
            entry.problem = (
                f"Pixel Data could not be read for hashing ({type(exc).__name__}: {exc})"
            )
        hashes.append(entry)
    return hashes


def archive_hash(volume: ImageVolume) -> FileHash | None:
    """The hash of the input itself when it is an archive (its members are hashed separately)."""
    if not any(ref.member for ref in volume.slices):
        return None
    path = Path(volume.input)
    try:
        return FileHash(path=str(path), size=path.stat().st_size, sha256=file_sha256(path))
    except OSError as exc:
        return FileHash(path=str(path), problem=f"could not be read ({exc.strerror or exc})")


def patient_identifiers(volume: ImageVolume, include_phi: bool) -> dict[str, str]:
    """Patient and visit identifiers of the first source file, or the reason they are not shown.

    Read from the file's header (pixels not read), because ``volume.attributes`` does not keep
    them. Without ``include_phi`` nothing is read and every value says it was withheld.
    """
    if not include_phi:
        return dict.fromkeys(PHI_FIELDS, PHI_WITHHELD)
    if not volume.kind.startswith("dicom") or not volume.source_files:
        return dict.fromkeys(PHI_FIELDS, "not available (not a DICOM input)")
    import pydicom

    try:
        header = pydicom.dcmread(volume.source_files[0], stop_before_pixels=True, force=True)
    except Exception as exc:
        return dict.fromkeys(PHI_FIELDS, f"could not be read ({type(exc).__name__}: {exc})")
    values = {}
    for keyword in PHI_FIELDS:
        value = header.get(keyword)
        values[keyword] = str(value) if value not in (None, "") else "(empty)"
    return values


def software_versions() -> dict[str, str | None]:
    """Versions of medforensics, Python, the platform and the libraries behind the analysis."""
    versions: dict[str, str | None] = {
        "medforensics": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    for name in SOFTWARE:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _metrics(card: Mapping[str, Any]) -> dict[str, Any] | None:
    for key in METRIC_KEYS:
        section = card.get(key)
        if isinstance(section, Mapping) and "auc" in section:
            figures = {name: section[name] for name in METRIC_FIELDS if name in section}
            for count in ("authentic_cases", "manipulated_cases", "authentic", "manipulated"):
                if count in section:
                    figures[count] = section[count]
            return {"source": key, **figures}
    return None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return "; ".join(_text(item) for item in value)
    return json.dumps(value, sort_keys=True, default=str)


def model_card_summary(described: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a ``Detector.describe()`` a reader needs: identity, data, figures, use, limits.

    When the description names no checkpoint hash, ``description_sha256`` (SHA-256 of the
    description as sorted JSON) still pins which model and settings answered.
    """
    summary: dict[str, Any] = {"name": str(described.get("name", "unknown"))}
    for key, label in CARD_KEYS:
        if key in described and label not in summary:
            summary[label] = _text(described[key])
    metrics = _metrics(described)
    if metrics is not None:
        summary["measured"] = metrics
    if "checkpoint SHA-256" not in summary:
        canonical = json.dumps(described, sort_keys=True, default=str).encode()
        summary["description SHA-256"] = hashlib.sha256(canonical).hexdigest()
    return summary


@functools.lru_cache(maxsize=16)
def _named_detector(name: str) -> Detector:
    from medforensics.detect import create_detector

    return create_detector(name)


def operating_point(detector: Detector) -> dict[str, Any] | None:
    """The thresholds that turn the detector's score into its verdict, when it exposes them."""
    point = getattr(detector, "operating_point", None)
    if point is None:
        point = getattr(getattr(detector, "model", None), "operating_point", None)
    if not isinstance(point, OperatingPoint):
        return None
    return {
        "manipulated_at": float(point.manipulated_at),
        "authentic_below": float(point.authentic_below),
        "target_fpr": point.target_fpr,
    }


def model_summaries(detector: Detector, detection: Detection) -> list[dict[str, Any]]:
    """A card summary and operating point for each model that answered.

    ``detection.detector`` names them (``ct-local+copy-move`` is two); a routing detector such as
    ``auto`` is listed first as the one requested.
    """
    summaries: list[dict[str, Any]] = []
    answered = [name for name in detection.detector.split("+") if name]
    if detector.name not in answered:
        summaries.append(
            {
                "name": detector.name,
                "role": "requested detector; it passed the image to the model(s) below",
                "operating point": operating_point(detector),
            }
        )
    for name in answered:
        try:
            instance = detector if name == detector.name else _named_detector(name)
            summary = model_card_summary(instance.describe())
            summary["operating point"] = operating_point(instance)
        except Exception as exc:  # the report still names the model, and says why no more
            summary = {"name": name, "problem": f"could not be described ({exc})"}
        summaries.append(summary)
    return summaries


def analysed(volume: ImageVolume) -> dict[str, Any]:
    """What was analysed, for the report's first table."""
    spacing = [None if math.isnan(v) else round(float(v), 4) for v in volume.spacing]
    attributes = volume.attributes
    return {
        "input": volume.input,
        "kind": volume.kind,
        "modality": volume.modality,
        "shape": list(volume.shape),
        "spacing_mm": spacing,
        "series_instance_uid": volume.series_uid,
        "study_instance_uid": volume.study_uid,
        "series_description": attributes.get("SeriesDescription"),
        "manufacturer": attributes.get("Manufacturer"),
        "model_name": attributes.get("ManufacturerModelName"),
        "kernel": attributes.get("ConvolutionKernel"),
        "transfer_syntax": list(volume.transfer_syntax),
        "files": len(volume.source_files),
        "problems": list(volume.problems),
    }


@dataclass
class Timing:
    """UTC ISO timestamps of one analysis (None where unknown)."""

    analysis_started: str | None = None
    analysis_finished: str | None = None


@dataclass
class Evidence:
    """Everything a report states about one input besides the pictures."""

    analysed: dict[str, Any]
    files: list[FileHash]
    archive: FileHash | None
    pixel_sha256: str
    hash_definitions: dict[str, str]
    patient: dict[str, str]
    models: list[dict[str, Any]]
    operating_point: dict[str, Any] | None
    software: dict[str, str | None]
    timestamps: dict[str, str | None]
    limits: list[str]
    detector_notes: list[str] = field(default_factory=list)
    detector_description: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect_evidence(
    volume: ImageVolume,
    detection: Detection,
    result: ScanResult,
    detector: Detector,
    *,
    include_phi: bool = False,
    timing: Timing | None = None,
) -> Evidence:
    """Hash the sources and pixels of ``volume`` and gather the facts about its analysis."""
    timing = timing or Timing()
    return Evidence(
        analysed=analysed(volume),
        files=hash_sources(volume),
        archive=archive_hash(volume),
        pixel_sha256=pixel_array_sha256(volume.pixels),
        hash_definitions=dict(HASH_DEFINITIONS),
        patient=patient_identifiers(volume, include_phi),
        models=model_summaries(detector, detection),
        operating_point=operating_point(detector),
        software=software_versions(),
        timestamps={
            "analysis_started": timing.analysis_started,
            "analysis_finished": timing.analysis_finished,
            "report_generated": utc_now(),
        },
        limits=list(METHOD_LIMITS),
        detector_notes=list(result.notes),
        detector_description=_json_safe(detector.describe()),
    )


def _json_safe(described: Mapping[str, Any]) -> dict[str, Any]:
    """``described`` as plain JSON types (paths and the like become strings)."""
    try:
        return dict(json.loads(json.dumps(dict(described), default=str)))
    except (TypeError, ValueError) as exc:
        return {"problem": f"the description could not be recorded ({exc})"}


@dataclass
class Picture:
    """A PNG for a report and what it shows."""

    png: bytes
    caption: str
    width: int
    height: int


@dataclass
class ReportContent:
    """Everything the HTML and PDF reports lay out, for one input.

    Attributes:
        title: the input's name.
        result: the scan contract's result (``ScanResult.to_dict()``).
        findings: one row per finding: kind, score, slice, row, col, radius, sop_instance_uid,
            detail.
        evidence: hashes, models, software, times, identifiers, limits.
        overlay: the most suspicious slice with the map and the findings' rings.
        overlay_slice: its index.
        crops: one per spatial finding shown, in findings order.
        strip: slices of a volume, each captioned with its index.
        saliency: a Grad-CAM picture for network detectors, when there is one.
        colour_bar: the heat scale.
        heat_legend: what the colours mean, in words.
        notes: what the reader must know about this report (regeneration, missing parts).
        dicom_files: names of the DICOM objects written beside the report.
    """

    title: str
    result: dict[str, Any]
    findings: list[dict[str, Any]]
    evidence: Evidence
    overlay: Picture | None = None
    overlay_slice: int | None = None
    crops: list[Picture] = field(default_factory=list)
    strip: list[Picture] = field(default_factory=list)
    saliency: Picture | None = None
    colour_bar: Picture | None = None
    heat_legend: str = ""
    notes: list[str] = field(default_factory=list)
    dicom_files: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return str(self.result.get("verdict") or "not assessed")

    @property
    def score(self) -> float | None:
        score = self.result.get("score")
        return float(score) if score is not None else None

    # rows both layouts (HTML, PDF) show, as (label, text) pairs

    def verdict_line(self) -> str:
        """The answer in one line: verdict and calibrated probability."""
        if self.score is None:
            return f"{self.verdict.upper()}: the image could not be assessed"
        # the calibration sets see as many tampered as authentic images: say so, or a 0.7 that
        # the operating point calls authentic reads as a contradiction
        return (
            f"{self.verdict.upper()}: manipulation score {self.score:.3f} (calibrated probability "
            f"{self.score * 100:.1f} % if manipulated and authentic images were equally common)"
        )

    #: columns of the findings table, in both layouts
    FINDING_COLUMNS = (
        "#",
        "kind",
        "score",
        "slice",
        "row",
        "col",
        "radius px",
        "SOP Instance UID",
        "why",
    )

    def finding_rows(self) -> list[list[str]]:
        """The findings table's rows, as text, in ``FINDING_COLUMNS`` order."""
        return [
            [
                str(f["number"]),
                str(f["kind"]),
                f"{f['score']:.3f}",
                str(f["slice"]),
                str(f["row"]),
                str(f["col"]),
                f"{f['radius']:g}",
                f["sop_instance_uid"] or "-",
                str(f["detail"]),
            ]
            for f in self.findings
        ]

    def threshold_line(self) -> str:
        """How the verdict follows from the score."""
        points: list[tuple[str, dict[str, Any]]] = [
            (str(m["name"]), m["operating point"])
            for m in self.evidence.models
            if isinstance(m.get("operating point"), dict)
        ]
        if not points:
            return "The detector states no operating point."
        parts = []
        for name, point in points:
            high, low = point["manipulated_at"], point["authentic_below"]
            text = f"{name}: manipulated at >= {high:.3f}, authentic below {low:.3f}"
            if high > low:
                text += ", inconclusive between"
            fpr = point.get("target_fpr")
            if fpr:
                text += f" (threshold set for a false-positive rate of {fpr:g})"
            parts.append(text)
        if len(points) > 1:
            parts.append("combined: manipulated if either says so, authentic only if both do")
        return "; ".join(parts) + "."

    def analysed_rows(self) -> list[tuple[str, str]]:
        a = self.evidence.analysed
        spacing = a.get("spacing_mm") or []
        rows = [
            ("input", a["input"]),
            ("kind", a["kind"]),
            ("modality", a["modality"]),
            ("shape (slices x rows x cols)", " x ".join(str(v) for v in a["shape"])),
            (
                "spacing (slice, row, col) mm",
                ", ".join("unknown" if v is None else f"{v:g}" for v in spacing),
            ),
            ("series description", a.get("series_description") or "-"),
            ("manufacturer", a.get("manufacturer") or "-"),
            ("scanner model", a.get("model_name") or "-"),
            ("reconstruction kernel", a.get("kernel") or "-"),
            ("series instance UID", a.get("series_instance_uid") or "-"),
            ("study instance UID", a.get("study_instance_uid") or "-"),
            ("transfer syntax", ", ".join(a.get("transfer_syntax") or []) or "-"),
            ("source files", str(a.get("files"))),
            ("detector", str(self.result.get("detector"))),
        ]
        rows.extend(("reading problem", problem) for problem in a.get("problems") or [])
        return rows

    def patient_rows(self) -> list[tuple[str, str]]:
        return list(self.evidence.patient.items())

    def model_rows(self) -> list[list[tuple[str, str]]]:
        """One list of rows per model."""
        blocks = []
        for model in self.evidence.models:
            rows = []
            for key, value in model.items():
                if key == "operating point":
                    if value:
                        text = ", ".join(f"{k} {v}" for k, v in value.items() if v is not None)
                        rows.append((key, text))
                    continue
                if key == "measured" and isinstance(value, dict):
                    source = value.get("source", "")
                    figures = ", ".join(f"{k} {v}" for k, v in value.items() if k != "source")
                    rows.append((f"measured ({source})", figures))
                    continue
                rows.append((key, str(value)))
            blocks.append(rows)
        return blocks

    def software_rows(self) -> list[tuple[str, str]]:
        return [(k, v or "not installed") for k, v in self.evidence.software.items()]

    def timestamp_rows(self) -> list[tuple[str, str]]:
        labels = {
            "analysis_started": "analysis started (UTC)",
            "analysis_finished": "analysis finished (UTC)",
            "report_generated": "report generated (UTC)",
        }
        return [
            (labels.get(k, k), v or "not recorded") for k, v in self.evidence.timestamps.items()
        ]
