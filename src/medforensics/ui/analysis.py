"""Local analysis for the web app: uploads → the scan pipeline → what the pages show.

Nothing here detects or draws: ``medforensics.scan`` answers, ``report.build`` writes the
reports, ``explain.maps`` gives the map. This module prepares the uploaded files, keeps what a
page needs between Streamlit reruns (the volume, the detector's answer) and names everything as
the user named it, not by its path in the session's temporary folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from medforensics.detect.base import Detector
from medforensics.detect.types import Detection
from medforensics.io.loader import LoadOptions, Skipped
from medforensics.io.sniff import sniff_format
from medforensics.io.types import ImageVolume, ReadError
from medforensics.scan import ScanResult, report_dict, scan_paths
from medforensics.ui.session import SessionFiles, Upload, save_upload

#: called with a line of progress for people
Progress = Callable[[str], None]

#: MIME types of the downloads
MIME = {
    "pdf": "application/pdf",
    "html": "text/html",
    "json": "application/json",
    "dcm": "application/dicom",
    "png": "image/png",
    "csv": "text/csv",
    "zip": "application/zip",
}


@dataclass(frozen=True)
class Download:
    """A file offered for download: button label, file name, bytes, MIME type."""

    label: str
    file_name: str
    data: bytes
    mime: str


@dataclass
class Reports:
    """What ``write_reports`` produced for one item, read back for the page."""

    downloads: list[Download]
    evidence: dict[str, Any] | None
    notes: list[str]


@dataclass
class AnalysedItem:
    """One result (a series or an image) of an analysis.

    Attributes:
        number: 1-based position in the analysis.
        name: how the page names it (upload names, never temporary paths).
        result: the scan contract's result, with ``input``/``location``/``error`` relabelled.
        volume: the pixels that were analysed (None for failed inputs and REST results).
        detection: the detector's full answer, map included (None likewise).
        analysed: what was analysed (``report.evidence.analysed``).
        models: the models that answered, with their card summaries.
        described: the requested detector's ``describe()``.
        seconds: time spent reading and analysing.
        reports: filled when the reports have been written (see ``ensure_reports``).
        overlay_png: the service's overlay picture (REST mode only).
        remote_id: the service's analysis id (REST mode only).
    """

    number: int
    name: str
    result: ScanResult
    volume: ImageVolume | None = None
    detection: Detection | None = None
    analysed: dict[str, Any] | None = None
    models: list[dict[str, Any]] = field(default_factory=list)
    described: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    reports: Reports | None = None
    overlay_png: bytes | None = None
    remote_id: str | None = None

    @property
    def failed(self) -> bool:
        return self.result.failed


@dataclass
class Analysis:
    """One press of "analyse": its inputs, results and the folder holding its files."""

    id: str
    sources: list[str]
    items: list[AnalysedItem]
    skipped: list[Skipped] = field(default_factory=list)
    upload_sha256: dict[str, str] = field(default_factory=dict)
    folder: Path | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[AnalysedItem]:
        return [item for item in self.items if item.failed]

    @property
    def analysed_items(self) -> list[AnalysedItem]:
        return [item for item in self.items if not item.failed]

    def result_json(self) -> bytes:
        """The scan contract's JSON for every result (names as uploaded)."""
        payload = report_dict([item.result for item in self.items], self.skipped)
        return (json.dumps(payload, indent=2, allow_nan=False) + "\n").encode()


class _Announcing(Detector):
    """Passes ``detect`` through, first telling the page which volume is being analysed."""

    name: ClassVar[str] = "announcing"

    def __init__(self, inner: Detector, announce: Callable[[ImageVolume], None]) -> None:
        self.inner = inner
        self.announce = announce

    def detect(self, volume: ImageVolume) -> Detection:
        self.announce(volume)
        return self.inner.detect(volume)

    def supports(self, volume: ImageVolume) -> bool:
        return self.inner.supports(volume)

    def describe(self) -> dict[str, object]:
        return self.inner.describe()


def sources_label(sources: Sequence[str], shown: int = 3) -> str:
    """``a.dcm``, ``a.dcm, b.dcm`` or ``a.dcm, b.dcm, c.dcm and 9 more``."""
    if len(sources) <= shown:
        return ", ".join(sources)
    return f"{', '.join(sources[:shown])} and {len(sources) - shown} more"


class Relabel:
    """Rewrites paths inside the session folder as the user knows them (upload names)."""

    def __init__(self, root: Path, whole: str) -> None:
        self.root = str(root)
        self.whole = whole

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return None
        if text.rstrip("/") == self.root:
            return self.whole
        return text.replace(self.root + "/", "").replace(self.root, self.whole)

    def result(self, result: ScanResult) -> ScanResult:
        return replace(
            result,
            input=self(result.input) or result.input,
            location=self(result.location),
            error=self(result.error),
            notes=[self(note) or note for note in result.notes],
            problems=[self(problem) or problem for problem in result.problems],
        )


def prepare_inputs(
    uploads: Sequence[Upload], files: SessionFiles, purpose: str = "analysis"
) -> tuple[Path, list[Path]]:
    """Write ``uploads`` into a new session folder; zips are extracted next to them.

    Zips are extracted (with the library's safe extraction: size, ratio and path checks) into a
    folder named like the archive, so the volumes' source files stay on disk for the reports
    written after the verdict is shown. A zip that cannot be extracted is left as a file: the
    scan then reports why, naming it.

    Returns:
        The folder the inputs are in (``<folder>/inputs``) and the paths to scan.
    """
    from medforensics.io.archive import extract_zip

    folder = files.new_folder(purpose)
    inputs = folder / "inputs"
    archives = folder / "archives"
    inputs.mkdir()
    archives.mkdir()
    for upload in uploads:
        saved = save_upload(upload, archives)
        try:
            is_zip = sniff_format(saved) == "zip"
        except OSError:
            is_zip = False
        if not is_zip:
            saved.rename(inputs / saved.name)
            continue
        try:
            with extract_zip(saved) as extracted:
                shutil.move(str(extracted), str(inputs / saved.name))
        except ReadError:
            saved.rename(inputs / saved.name)  # the scan names the file and the problem
    entries = sorted(inputs.iterdir())
    return folder, entries if len(entries) == 1 else [inputs]


def upload_hashes(uploads: Sequence[Upload]) -> dict[str, str]:
    """SHA-256 of each uploaded file, by the name the user gave."""
    return {upload.name: hashlib.sha256(upload.data).hexdigest() for upload in uploads}


def analyse_uploads(
    uploads: Sequence[Upload],
    detector: Detector,
    files: SessionFiles,
    *,
    options: LoadOptions | None = None,
    progress: Progress | None = None,
) -> Analysis:
    """Read and analyse ``uploads`` locally; every input gives an item, errors included.

    The volumes and the detector's answers are kept for the viewer; reports are written later
    (``ensure_reports``) so the verdict can be shown first.
    """
    folder, paths = prepare_inputs(uploads, files)
    analysis = analyse_prepared(
        folder,
        paths,
        [upload.name for upload in uploads],
        detector,
        options=options,
        progress=progress,
    )
    analysis.upload_sha256 = upload_hashes(uploads)
    return analysis


def analyse_prepared(
    folder: Path,
    paths: Sequence[Path],
    sources: Sequence[str],
    detector: Detector,
    *,
    options: LoadOptions | None = None,
    progress: Progress | None = None,
) -> Analysis:
    """Analyse ``paths`` (inside ``folder/inputs``), naming them by ``sources``."""
    started = time.perf_counter()
    say = progress or (lambda _text: None)
    relabel = Relabel(folder / "inputs", sources_label(sources))
    say(f"Reading {sources_label(sources)}")
    analysis = Analysis(id=uuid.uuid4().hex[:8], sources=list(sources), items=[], folder=folder)
    kept: dict[int, tuple[ImageVolume, Detection]] = {}
    clock = [time.perf_counter()]

    def announce(volume: ImageVolume) -> None:
        shape = "×".join(str(n) for n in volume.shape)
        say(f"Analysing {relabel(volume.input)}: {volume.modality} {shape} with {detector.name}")

    def keep(volume: ImageVolume, detection: Detection, result: ScanResult) -> None:
        kept[id(result)] = (volume, detection)

    def skipped(item: Skipped) -> None:
        analysis.skipped.append(
            Skipped(relabel(item.input) or item.input, relabel(item.path) or item.path, item.reason)
        )

    announcing = _Announcing(detector, announce)
    for result in scan_paths(paths, announcing, options, on_skipped=skipped, on_analysed=keep):
        volume, detection = kept.pop(id(result), (None, None))
        item = make_item(
            len(analysis.items) + 1, relabel.result(result), volume, detection, detector
        )
        now = time.perf_counter()
        item.seconds, clock[0] = now - clock[0], now
        analysis.items.append(item)
    analysis.seconds = time.perf_counter() - started
    return analysis


def make_item(
    number: int,
    result: ScanResult,
    volume: ImageVolume | None,
    detection: Detection | None,
    detector: Detector,
) -> AnalysedItem:
    from medforensics.report.evidence import analysed, model_summaries

    item = AnalysedItem(number, item_name(result), result, volume, detection)
    if volume is not None and detection is not None:
        item.analysed = analysed(volume)
        item.analysed["input"] = result.input
        item.models = model_summaries(detector, detection)
        item.described = _plain(detector.describe())
    return item


#: suffixes taken off a name to make download file names
_SUFFIXES = (".nii.gz", ".nii", ".zip", ".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tiff", ".tif")


def download_stem(name: str) -> str:
    """A file-name stem for downloads about ``name``: its last part, without the usual suffix."""
    from medforensics.report.build import safe_name

    last = name.split("!")[-1].rstrip("/").split("/")[-1]
    for suffix in _SUFFIXES:
        if last.lower().endswith(suffix) and len(last) > len(suffix):
            last = last[: -len(suffix)]
            break
    return safe_name(last, 80) or "result"


def item_name(result: ScanResult) -> str:
    """How the page names a result: where it is (a file, a folder inside a zip, the upload)."""
    return result.location or result.input


def _plain(described: dict[str, object]) -> dict[str, Any]:
    try:
        return dict(json.loads(json.dumps(described, default=str)))
    except (TypeError, ValueError):
        return {"name": str(described.get("name", "unknown"))}


def ensure_reports(item: AnalysedItem, detector: Detector, out_dir: Path) -> Reports:
    """Write the item's reports once (PDF, HTML, evidence JSON, DICOM SR...) and read them back."""
    if item.reports is not None:
        return item.reports
    if item.volume is None or item.detection is None:
        item.reports = Reports([], None, ["no reports: this input was not analysed here"])
        return item.reports
    from medforensics.report.build import write_reports

    written = write_reports(item.volume, item.detection, item.result, detector, out_dir)
    stem = download_stem(item.name)
    downloads = []
    for label, path, suffix in (
        ("PDF report", written.pdf, "pdf"),
        ("HTML report", written.html, "html"),
        ("DICOM SR", written.dicom.get("sr"), "dcm"),
    ):
        if path is not None and Path(path).is_file():
            name = f"{stem}.sr.dcm" if label == "DICOM SR" else f"{stem}.{suffix}"
            downloads.append(Download(label, name, Path(path).read_bytes(), MIME[suffix]))
    result_json = json.dumps(report_dict([item.result]), indent=2, allow_nan=False) + "\n"
    downloads.append(
        Download("JSON result", f"{stem}.result.json", result_json.encode(), MIME["json"])
    )
    evidence = None
    try:
        evidence_bytes = written.json.read_bytes()
        evidence = json.loads(evidence_bytes).get("evidence")
        downloads.append(
            Download("Evidence JSON", f"{stem}.evidence.json", evidence_bytes, MIME["json"])
        )
    except (OSError, ValueError):
        pass
    item.reports = Reports(downloads, evidence, list(written.notes))
    return item.reports
