"""Analysis of one complete batch: scan, reports, result objects, outcome. Runs on the worker pool.

Nothing here touches the network or the index: ``analyse_folder`` reads the batch's files and
writes results into a folder of its own, and the caller records the outcome in one transaction.
A crash in the middle leaves the batch ``complete``; the next attempt starts from a clean results
folder, so result objects are never half-written nor forwarded twice under different UIDs.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom

from medforensics.detect.base import Detector
from medforensics.detect.types import Detection
from medforensics.gateway.durable import fsync_tree, make_dirs
from medforensics.gateway.origin import is_non_image_sop_class, is_ours
from medforensics.gateway.spool import ResultObject
from medforensics.io.types import ImageVolume
from medforensics.scan import ScanResult, scan_paths

LOGGER = logging.getLogger("medforensics.gateway.worker")

#: how suspicious each outcome is; a batch takes its most suspicious result's outcome
SEVERITY = {"passthrough": 0, "authentic": 1, "error": 2, "inconclusive": 3, "manipulated": 4}


@dataclass
class Analysis:
    """What the worker found out about a batch."""

    outcome: str
    score: float | None
    results: list[dict[str, Any]] = field(default_factory=list)
    result_objects: list[ResultObject] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _header(path: Path) -> pydicom.Dataset | None:
    try:
        # defer_size: large values (the pixels) stay on disk, but "PixelData" in ds still works
        return pydicom.dcmread(path, defer_size="4 KB")
    except Exception:
        return None


def passthrough_reason(files: Sequence[Path]) -> str | None:
    """Why none of these files is an image to analyse (ours, or no pixels), or None."""
    reasons: set[str] = set()
    for path in files:
        ds = _header(path)
        if ds is None:
            return None  # let the scanner say what is wrong with it
        if is_ours(ds.get("Manufacturer"), ds.get("SeriesDescription")):
            reasons.add("medforensics result objects")
        elif is_non_image_sop_class(ds.get("SOPClassUID")) or "PixelData" not in ds:
            reasons.add("objects without images")
        else:
            return None
    return " and ".join(sorted(reasons)) or None


def outcome_of(results: Sequence[ScanResult]) -> tuple[str, float | None]:
    """The batch's outcome (its most suspicious result) and highest score."""
    outcome, score = "error", None
    if results:
        outcomes = ["error" if r.failed else (r.verdict or "error") for r in results]
        outcome = max(outcomes, key=lambda o: SEVERITY.get(o, SEVERITY["error"]))
        scores = [r.score for r in results if r.score is not None]
        score = max(scores) if scores else None
    return outcome, score


class ReportWriter:
    """``on_analysed`` hook: writes reports (and DICOM results) for each analysed volume."""

    def __init__(self, detector: Detector, out_dir: Path) -> None:
        self.detector = detector
        self.out_dir = out_dir
        self.dicom: list[tuple[str, Path]] = []
        self.notes: list[str] = []
        self._count = 0

    def __call__(self, volume: ImageVolume, detection: Detection, result: ScanResult) -> None:
        try:
            from medforensics.report.build import write_reports
        except ImportError as exc:
            note = f"reports not written: medforensics.report.build is unavailable ({exc})"
            if note not in self.notes:
                self.notes.append(note)
            return
        self._count += 1
        files = write_reports(
            volume,
            detection,
            result,
            self.detector,
            self.out_dir / f"{self._count:03d}",
            dicom=True,
        )
        self.dicom.extend((kind, Path(path)) for kind, path in files.dicom.items())
        self.notes.extend(files.notes)


def _result_object(path: Path, root: Path) -> ResultObject | None:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return ResultObject(
            file_name=str(path.relative_to(root)),
            sop_uid=str(ds.SOPInstanceUID),
            sop_class_uid=str(ds.SOPClassUID),
            size=path.stat().st_size,
        )
    except Exception as exc:
        LOGGER.warning("result object %s cannot be read back: %s", path, exc)
        return None


def analyse_folder(
    folder: Path,
    detector: Detector,
    results_dir: Path,
    *,
    write_reports: bool = True,
    attach: Sequence[str] = ("sr", "sc", "pdf"),
    audit: Callable[[ImageVolume, Detection, ScanResult], None] | None = None,
) -> Analysis:
    """Scan the batch in ``folder``; reports and result objects go to ``results_dir``.

    ``audit`` (e.g. ``provenance.audit.AuditHook``) sees each analysis after its reports.
    """
    files = sorted(folder.glob("*.dcm"))
    shutil.rmtree(results_dir, ignore_errors=True)
    make_dirs(results_dir)
    reason = passthrough_reason(files) if files else None
    if reason is not None:
        return Analysis("passthrough", None, notes=[f"not analysed: {reason}"])
    writer = ReportWriter(detector, results_dir) if write_reports else None
    hooks = [hook for hook in (writer, audit) if hook is not None]

    def after(volume: ImageVolume, detection: Detection, result: ScanResult) -> None:
        for hook in hooks:  # one failing (a report) must not skip the next (the audit entry)
            try:
                hook(volume, detection, result)
            except Exception as exc:
                result.notes.append(f"post-processing failed: {type(exc).__name__}: {exc}")

    results = list(scan_paths([str(folder)], detector, on_analysed=after if hooks else None))
    outcome, score = outcome_of(results)
    analysis = Analysis(outcome, score, [r.to_dict() for r in results])
    if writer is not None:
        analysis.notes.extend(writer.notes)
        for kind, path in writer.dicom:
            if kind in attach:
                obj = _result_object(path, results_dir)
                if obj is not None:
                    analysis.result_objects.append(obj)
    fsync_tree(results_dir)
    return analysis
