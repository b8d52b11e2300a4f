"""The scan pipeline: load → detect → results in the scan contract (one per series or image)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medforensics.__about__ import __version__
from medforensics.detect import Detector, create_detector
from medforensics.detect.types import Detection
from medforensics.io.loader import LoadOptions, Skipped, load_paths
from medforensics.io.types import ImageVolume, LoadError

TOOL_NAME = "medforensics"
DEFAULT_DETECTOR = "auto"

#: exit codes, ClamAV style
EXIT_AUTHENTIC, EXIT_FLAGGED, EXIT_ERROR = 0, 1, 2


@dataclass
class ResultFinding:
    """A finding as the scan contract states it."""

    kind: str
    score: float
    slice: int
    row: int
    col: int
    sop_instance_uid: str | None = None
    radius: float = 0.0
    detail: str = ""
    frame: int | None = None


@dataclass
class ScanResult:
    """One result per series or image: the scan contract's ``results[]`` entry.

    The first ten fields are the stable contract; the rest are extras for people and reports.
    """

    input: str
    kind: str | None
    modality: str | None
    shape: list[int] | None
    score: float | None
    verdict: str | None
    findings: list[ResultFinding] = field(default_factory=list)
    error: str | None = None
    detector: str | None = None
    location: str | None = None
    series_instance_uid: str | None = None
    study_instance_uid: str | None = None
    files: int = 0
    spacing: list[float | None] | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.error is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _location(volume: ImageVolume) -> str:
    files = volume.source_files
    if not files:
        return volume.input
    if len(files) == 1:
        ref = volume.slices[0]
        return f"{volume.input}!{ref.member}" if ref.member else str(files[0])
    return str(files[0].parent)


def analyse_volume(volume: ImageVolume, detector: Detector) -> tuple[Detection, ScanResult]:
    """Run ``detector`` on one volume: its full answer (maps included) and the contract result."""
    detection = detector.detect(volume)
    return detection, result_of(volume, detection)


def result_of(volume: ImageVolume, detection: Detection) -> ScanResult:
    """The scan contract's result for a volume and the detector's answer on it."""
    findings = []
    for finding in detection.findings:
        ref = volume.slices[finding.slice] if volume.slices else None
        findings.append(
            ResultFinding(
                kind=finding.kind,
                score=round(float(finding.score), 6),
                slice=int(finding.slice),
                row=int(finding.row),
                col=int(finding.col),
                sop_instance_uid=ref.sop_instance_uid if ref else None,
                radius=round(float(finding.radius), 2),
                detail=finding.detail,
                frame=ref.frame if ref and volume.kind == "dicom-multiframe" else None,
            )
        )
    return ScanResult(
        input=volume.input,
        kind=volume.kind,
        modality=volume.modality,
        shape=list(volume.shape),
        score=round(float(detection.score), 6),
        verdict=detection.verdict,
        findings=findings,
        detector=detection.detector,
        location=_location(volume),
        series_instance_uid=volume.series_uid,
        study_instance_uid=volume.study_uid,
        files=len(volume.source_files),
        spacing=[None if math.isnan(v) else round(float(v), 6) for v in volume.spacing],
        problems=list(volume.problems),
        notes=list(detection.notes),
    )


def result_from_error(error: LoadError) -> ScanResult:
    return ScanResult(
        input=error.input,
        kind=None,
        modality=None,
        shape=None,
        score=None,
        verdict=None,
        error=str(error),
        location=error.path,
    )


@dataclass
class ScanEvent:
    """What the pipeline reports as it goes, for progress bars."""

    result: ScanResult | None = None
    skipped: Skipped | None = None


def scan_paths(
    paths: Iterable[str | Path],
    detector: Detector | str = DEFAULT_DETECTOR,
    options: LoadOptions | None = None,
    on_skipped: Callable[[Skipped], None] | None = None,
    on_analysed: Callable[[ImageVolume, Detection, ScanResult], None] | None = None,
) -> Iterator[ScanResult]:
    """Scan every path; one result per series or image, errors included, never raises on input.

    Volumes are analysed as soon as they are read and dropped afterwards, so memory holds one
    volume at a time. ``on_analysed`` sees each volume with the detector's full answer (maps
    included) before it is dropped, e.g. to write reports; an error it raises becomes a note on
    that result, never the end of the batch.
    """
    active = create_detector(detector) if isinstance(detector, str) else detector
    for item in load_paths(paths, options):
        if isinstance(item, Skipped):
            if on_skipped is not None:
                on_skipped(item)
            continue
        if isinstance(item, LoadError):
            yield result_from_error(item)
            continue
        try:
            detection, result = analyse_volume(item, active)
        except MemoryError:
            yield result_from_error(
                LoadError(item.input, _location(item), "ran out of memory during analysis")
            )
            continue
        except Exception as exc:  # a detector bug must not end the batch; say so plainly
            yield result_from_error(
                LoadError(
                    item.input,
                    _location(item),
                    f"analysis failed with an internal error ({type(exc).__name__}: {exc}); "
                    "please report it with 'medforensics env' output",
                )
            )
            continue
        if on_analysed is not None:
            try:
                on_analysed(item, detection, result)
            except Exception as exc:  # a report that cannot be written must not lose the result
                result.notes.append(f"post-processing failed: {type(exc).__name__}: {exc}")
        yield result


def report_dict(results: Iterable[ScanResult], skipped: Iterable[Skipped] = ()) -> dict[str, Any]:
    """The scan contract's top-level JSON object."""
    return {
        "tool": TOOL_NAME,
        "version": __version__,
        "results": [result.to_dict() for result in results],
        "skipped": [{"input": s.input, "path": s.path, "reason": s.reason} for s in skipped],
    }


def exit_code(results: Iterable[ScanResult]) -> int:
    """2 if any input could not be analysed, else 1 if anything was flagged, else 0.

    ``inconclusive`` counts as flagged: it is not a clean bill of health.
    """
    code = EXIT_AUTHENTIC
    for result in results:
        if result.failed:
            return EXIT_ERROR
        if result.verdict != "authentic":
            code = EXIT_FLAGGED
    return code
