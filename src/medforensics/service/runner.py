"""Run one analysis job: link its inputs into a work folder, scan, write reports.

This module runs inside worker processes: it imports no web framework and never touches the
database; what it returns is plain JSON-ready data the supervisor records.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medforensics.detect.base import Detector
from medforensics.detect.types import Detection
from medforensics.io.loader import LoadOptions, Skipped
from medforensics.io.types import ImageVolume
from medforensics.scan import ScanResult, report_dict, scan_paths
from medforensics.service.storage import link_or_copy

#: severity order of verdicts for the analysis' summary verdict
_SEVERITY = {"manipulated": 3, "inconclusive": 2, "authentic": 1}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: the loader's temporary folder for an extracted zip (see medforensics.io.archive)
_ZIP_TEMP = re.compile(re.escape(tempfile.gettempdir()) + r"/medforensics-zip-[A-Za-z0-9_]+/?")
#: what a multi-file upload is called in results (the folder the worker built is no one's path)
UPLOAD_LABEL = "upload"


@dataclass(frozen=True)
class JobInput:
    name: str
    blob: Path
    format: str


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs for one attempt of one job (picklable)."""

    job_id: str
    attempt: int
    inputs: tuple[JobInput, ...]
    modality: str | None
    work_dir: Path
    artefact_dir: Path
    data_dir: Path
    reports: bool = True


def safe_name(name: str, index: int) -> str:
    """A file name safe to create: the base name, odd characters replaced, never empty."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).lstrip(".")[:120]
    return cleaned or f"input-{index + 1}"


def unique_names(names: Sequence[str]) -> list[str]:
    """``safe_name`` of each, made unique by numbering repeats before the extension."""
    used: set[str] = set()
    chosen: list[str] = []
    for index, name in enumerate(names):
        candidate = safe_name(name, index)
        stem, dot, suffix = candidate.partition(".")
        number = 2
        while candidate.lower() in used:
            candidate = f"{stem}-{number}{dot}{suffix}"
            number += 1
        used.add(candidate.lower())
        chosen.append(candidate)
    return chosen


def summary_verdict(results: Sequence[ScanResult]) -> tuple[str | None, float | None]:
    """The most severe verdict and the highest score over the results (None when none)."""
    verdicts = [r.verdict for r in results if r.verdict in _SEVERITY]
    scores = [r.score for r in results if r.score is not None]
    verdict = max(verdicts, key=lambda v: _SEVERITY[v]) if verdicts else None
    return verdict, (max(scores) if scores else None)


def _relabel(value: Any, folder: str) -> Any:
    """Replace the worker's folder in every string of ``value`` (results name uploads only)."""
    if isinstance(value, str):
        if value == folder:
            return UPLOAD_LABEL
        return value.replace(folder + "/", "").replace(folder, UPLOAD_LABEL)
    if isinstance(value, list):
        return [_relabel(item, folder) for item in value]
    if isinstance(value, dict):
        return {key: _relabel(item, folder) for key, item in value.items()}
    return value


class _ReportWriter:
    """``on_analysed`` hook: writes each result's reports into ``<artefact dir>/<index>``."""

    def __init__(self, spec: JobSpec, detector: Detector, results: list[ScanResult]) -> None:
        self.spec = spec
        self.detector = detector
        self.results = results
        self.artefacts: dict[int, dict[str, Any]] = {}
        self.unavailable: str | None = None

    def __call__(self, volume: ImageVolume, detection: Detection, result: ScanResult) -> None:
        index = len(self.results)  # the result being analysed is the next one appended
        try:
            from medforensics.report.build import write_reports
        except ImportError as exc:
            self.unavailable = f"reports are not available on this server ({exc})"
            return
        out_dir = self.spec.artefact_dir / str(index)
        files = write_reports(volume, detection, result, self.detector, out_dir)
        sr = files.dicom.get("sr") if files.dicom else None
        self.artefacts[index] = {
            "pdf": self._relative(files.pdf),
            "overlay_png": self._relative(files.overlay_png),
            "sr": self._relative(sr),
            "notes": list(files.notes),
        }

    def _relative(self, path: Path | None) -> str | None:
        if path is None or not Path(path).is_file():
            return None
        return Path(path).resolve().relative_to(self.spec.data_dir.resolve()).as_posix()


def run_job(detector: Detector, spec: JobSpec) -> dict[str, Any]:
    """Analyse a job's inputs; the scan contract's JSON plus artefacts, verdict and score."""
    folder = spec.work_dir / "inputs"
    shutil.rmtree(spec.work_dir, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        names = unique_names([item.name for item in spec.inputs])
        for item, name in zip(spec.inputs, names, strict=True):
            link_or_copy(item.blob, folder / name)
        # one file alone is scanned as itself; several are one folder so series group
        target = folder / names[0] if len(names) == 1 else folder
        results: list[ScanResult] = []
        skipped: list[Skipped] = []
        writer = _ReportWriter(spec, detector, results) if spec.reports else None
        for result in scan_paths(
            [str(target)],
            detector,
            LoadOptions(modality=spec.modality),
            on_skipped=skipped.append,
            on_analysed=writer,
        ):
            results.append(result)
        verdict, score = summary_verdict(results)
        report = _relabel(report_dict(results, skipped), str(folder))
        for entry in report["results"]:
            # a series read from a zip is located in the loader's temporary folder
            archive = f"{entry['input']}!"
            for key in ("location", "error"):
                if isinstance(entry.get(key), str):
                    entry[key] = _ZIP_TEMP.sub(archive, entry[key])
        artefacts = [
            writer.artefacts.get(index, {}) if writer else {} for index in range(len(results))
        ]
        if writer is not None and writer.unavailable:
            for entry in artefacts:
                entry.setdefault("notes", []).append(writer.unavailable)
        return {"report": report, "artefacts": artefacts, "verdict": verdict, "score": score}
    finally:
        shutil.rmtree(spec.work_dir, ignore_errors=True)
