"""Writing files so that they survive a crash: temp file, fsync, atomic rename, folder fsync."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def safe_name(uid: str) -> str:
    """A file or folder name for a DICOM UID that can never leave its folder.

    Conformant UIDs (digits and dots, at most 64 characters) are used as they are; anything else
    (a hostile ``../..``, a vendor's letters) becomes a hash, so names stay unique and safe.
    """
    uid = uid.strip().rstrip("\x00")
    if len(uid) <= 64 and _UID.fullmatch(uid):
        return uid
    return "x" + hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()[:40]


def fsync_dir(folder: Path) -> None:
    """Make the names in ``folder`` (new files, renames, removals) durable."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_dirs(folder: Path) -> None:
    """``mkdir -p`` that also fsyncs the parent of every folder it creates.

    Another thread may remove an empty parent meanwhile (a finished series' folder): then the
    chain is simply made again.
    """
    for _attempt in range(4):
        try:
            _make_chain(folder)
            return
        except FileNotFoundError:
            continue
    _make_chain(folder)


def _make_chain(folder: Path) -> None:
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        fsync_dir(path.parent)


def write_new_file(path: Path, data: bytes) -> None:
    """Create ``path`` (which must not exist), write ``data`` and fsync it."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        view = memoryview(data)
        while view:
            written = os.write(descriptor, view)
            view = view[written:]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def publish(temp: Path, target: Path) -> None:
    """Atomically rename a fsynced ``temp`` file to ``target`` and make the rename durable."""
    os.replace(temp, target)
    fsync_dir(target.parent)


def write_atomic(target: Path, data: bytes) -> None:
    """Write ``target`` so that it is either absent, the old content or all of ``data``."""
    make_dirs(target.parent)
    temp = target.with_name(f".{target.name}.{os.getpid()}.part")
    temp.unlink(missing_ok=True)
    try:
        write_new_file(temp, data)
        publish(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def move_dir(source: Path, target: Path) -> None:
    """Rename a folder (same file system) and make both folders' entries durable."""
    make_dirs(target.parent)
    os.replace(source, target)
    fsync_dir(target.parent)
    fsync_dir(source.parent)


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder below ``folder`` (result files written by other code)."""
    for dirpath, _dirnames, filenames in os.walk(folder):
        for name in filenames:
            descriptor = os.open(Path(dirpath) / name, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        fsync_dir(Path(dirpath))
