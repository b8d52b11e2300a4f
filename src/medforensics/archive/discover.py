"""Walk an archive lazily and turn what it holds into analysis tasks.

The walk streams: ``os.scandir`` one folder at a time, depth first, in name order, so memory holds
the folder being read and the names of folders still to visit, never an index of the archive.
DICOM files are grouped the way the loader groups them (by SeriesInstanceUID; projection images
and multi-frame files stand alone), but within one folder and from a header read that stops
before the pixel data and keeps five tags. Everything else the loader reads (NIfTI, PNG, JPEG,
TIFF, zip) is a task of its own; files that are not images are reported as skipped.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom

from medforensics.archive.tasks import FileStamp, SeriesTask, make_task
from medforensics.io.dicom import ENHANCED_SOP_CLASSES
from medforensics.io.loader import IGNORED_NAMES
from medforensics.io.series import PROJECTION_MODALITIES
from medforensics.io.sniff import sniff_format

#: the only header elements discovery reads
DISCOVERY_TAGS = (
    "SOPClassUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "NumberOfFrames",
)
#: suffixes that make an unrecognised file worth handing to the DICOM reader for a diagnosis
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


@dataclass(frozen=True)
class SkippedFile:
    """A file that is not an image (a README, DICOMDIR...): counted, never analysed."""

    path: str
    reason: str


@dataclass(frozen=True)
class WalkProblem:
    """A folder or file the walk could not look at (permissions, vanished while walking)."""

    path: str
    message: str


DiscoveryItem = SeriesTask | SkippedFile | WalkProblem


@dataclass(frozen=True)
class _DicomHeader:
    stamp: FileStamp
    series_uid: str | None
    study_uid: str | None
    modality: str | None
    stands_alone: bool


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None


def read_discovery_header(stamp: FileStamp) -> _DicomHeader | None:
    """The five tags discovery needs, or None when the header cannot be read at all."""
    try:
        ds = pydicom.dcmread(
            stamp.path, stop_before_pixels=True, specific_tags=list(DISCOVERY_TAGS), force=True
        )
        modality = _text(ds, "Modality")
        try:
            frames = int(ds.get("NumberOfFrames") or 1)
        except (TypeError, ValueError):
            frames = 1
        sop_class = _text(ds, "SOPClassUID")
        series_uid = _text(ds, "SeriesInstanceUID")
        study_uid = _text(ds, "StudyInstanceUID")
    except Exception:  # pydicom raises many kinds on damaged files; the worker will say which
        return None
    stands_alone = (
        series_uid is None
        or frames > 1
        or sop_class in ENHANCED_SOP_CLASSES
        or modality in PROJECTION_MODALITIES
    )
    return _DicomHeader(stamp, series_uid, study_uid, modality, stands_alone)


def _relative(path: str, root: str) -> str:
    relative = os.path.relpath(path, root)
    return Path(path).name if relative == "." else relative


def _folder_tasks(
    root: str, folder: str, files: list[FileStamp]
) -> Iterator[SeriesTask | SkippedFile]:
    """Classify one folder's files and group its DICOM slices into series."""
    series: dict[str, list[_DicomHeader]] = defaultdict(list)
    for stamp in files:
        name = os.path.basename(stamp.path)
        if name in IGNORED_NAMES or name.startswith("._"):
            yield SkippedFile(stamp.path, "system or index file")
            continue
        try:
            fmt = sniff_format(stamp.path)
        except OSError:
            fmt = "dicom"  # unreadable: let the worker's reader say why, naming the file
        if fmt == "unknown" and stamp.path.lower().endswith(_DICOM_SUFFIXES):
            fmt = "dicom"
        if fmt == "unknown":
            yield SkippedFile(stamp.path, "not an image format this tool reads")
            continue
        header = read_discovery_header(stamp) if fmt == "dicom" else None
        if header is None or header.stands_alone:
            yield make_task(
                root,
                _relative(stamp.path, root),
                "file",
                [stamp],
                series_uid=header.series_uid if header else None,
                study_uid=header.study_uid if header else None,
                modality=header.modality if header else None,
            )
            continue
        assert header.series_uid is not None  # stands_alone covers a missing UID
        series[header.series_uid].append(header)
    for uid in sorted(series):
        members = series[uid]
        first = members[0]
        yield make_task(
            root,
            _relative(folder, root),
            "dicom-series",
            [m.stamp for m in members],
            series_uid=uid,
            study_uid=first.study_uid,
            modality=first.modality,
        )


def _stamp(entry: os.DirEntry[str]) -> FileStamp:
    stat = entry.stat()
    return FileStamp(os.path.abspath(entry.path), stat.st_size, stat.st_mtime_ns)


def discover(root: str | Path) -> Iterator[DiscoveryItem]:
    """Yield the tasks of the archive below ``root``, one folder at a time.

    Symlinked folders are not followed (no cycles); symlinked files are read. A folder that
    cannot be listed, or a file that vanishes during the walk, becomes a ``WalkProblem`` and the
    walk goes on.

    Raises:
        FileNotFoundError: ``root`` does not exist.
    """
    top = os.path.abspath(os.fspath(root))
    if not os.path.exists(top):
        raise FileNotFoundError(f"{root}: no such file or folder")
    if os.path.isfile(top):
        stat = os.stat(top)
        stamp = FileStamp(top, stat.st_size, stat.st_mtime_ns)
        yield from _folder_tasks(os.path.dirname(top), os.path.dirname(top), [stamp])
        return
    pending = [top]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            yield WalkProblem(folder, f"folder cannot be listed: {exc.strerror or exc}")
            continue
        files: list[FileStamp] = []
        subfolders: list[str] = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(entry.path)
                elif entry.is_file():
                    files.append(_stamp(entry))
            except OSError as exc:
                yield WalkProblem(entry.path, f"cannot be read: {exc.strerror or exc}")
        # depth first, in name order: the stack gets the subfolders last-name first
        pending.extend(reversed(subfolders))
        if files:
            yield from _folder_tasks(top, folder, files)
