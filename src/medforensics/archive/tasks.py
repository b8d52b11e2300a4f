"""What the archive scanner hands to the cluster: one task per series or stand-alone file.

A task names its files by absolute path (workers read them from the same shared filesystem) and
carries a key: a SHA-256 of every file's path, size and modification time. A rerun that finds the
same files unchanged computes the same key and skips the task; a file rewritten, added or removed
gives a new key and a new analysis.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

TaskKind = Literal["dicom-series", "file"]

#: task statuses in the database: queued (handed to the cluster, no answer yet), done, failed
QUEUED, DONE, FAILED = "queued", "done", "failed"


@dataclass(frozen=True)
class FileStamp:
    """One file of a task as discovery saw it."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class SeriesTask:
    """One unit of analysis: a DICOM series (files of one folder sharing a SeriesInstanceUID) or
    one stand-alone file (multi-frame DICOM, a radiograph, NIfTI, PNG/JPEG/TIFF, a zip, or a file
    whose header could not be read, so that the worker reports precisely what is wrong with it).

    Attributes:
        key: ``task_key(files)``, the identity of the task across runs.
        root: the archive root the walk started from (absolute).
        location: the series folder or the file, relative to ``root``.
        kind: ``dicom-series`` or ``file``.
        files: the files, sorted by path.
        series_uid, study_uid, modality: from the headers, when discovery read them.
    """

    key: str
    root: str
    location: str
    kind: TaskKind
    files: tuple[FileStamp, ...]
    series_uid: str | None = None
    study_uid: str | None = None
    modality: str | None = None

    @property
    def n_files(self) -> int:
        return len(self.files)

    @property
    def n_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]


def task_key(files: Iterable[FileStamp]) -> str:
    """SHA-256 over the sorted ``(absolute path, size, mtime in ns)`` of every file.

    Paths are absolute, so one database can serve several archives (or several shards of one
    archive walked from different roots) without two different files ever sharing a key; moving
    the archive to another mount point therefore makes a rerun analyse it again, the safe side.
    """
    digest = hashlib.sha256(b"medforensics-archive-task/1\n")
    for stamp in sorted(files, key=lambda f: f.path):
        digest.update(f"{stamp.path}\0{stamp.size}\0{stamp.mtime_ns}\n".encode("utf-8", "replace"))
    return digest.hexdigest()


def make_task(
    root: str,
    location: str,
    kind: TaskKind,
    files: Sequence[FileStamp],
    *,
    series_uid: str | None = None,
    study_uid: str | None = None,
    modality: str | None = None,
) -> SeriesTask:
    ordered = tuple(sorted(files, key=lambda f: f.path))
    return SeriesTask(
        key=task_key(ordered),
        root=root,
        location=location,
        kind=kind,
        files=ordered,
        series_uid=series_uid,
        study_uid=study_uid,
        modality=modality,
    )


def pack(tasks: Iterable[SeriesTask], batch_files: int) -> Iterator[list[SeriesTask]]:
    """Group consecutive small tasks into batches of about ``batch_files`` files.

    A task with ``batch_files`` files or more travels alone; small series (2-4 slices, single
    radiographs) share one cluster task so the scheduler's per-task overhead stays small.
    """
    batch: list[SeriesTask] = []
    files = 0
    for task in tasks:
        if batch and files + task.n_files > batch_files:
            yield batch
            batch, files = [], 0
        batch.append(task)
        files += task.n_files
    if batch:
        yield batch
