"""SHA-256 of files: one implementation, and each file version read once per process.

A scan with ``--report --audit`` hashes every source file for the evidence and again for the
audit entry; the gateway and the archive do the same. The digest is remembered per file version
(device, inode, size, modification and change time), so an unchanged file is read once and a
changed one is always read again (the change time cannot be set back by the file's owner).
File times tick coarsely (a few ms), so as git does with "racily clean" files, a file changed
in the last two seconds is never answered from memory.
"""

from __future__ import annotations

import hashlib
import os
import time
from functools import lru_cache
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of the file at ``path``, streamed (memory stays flat for any size)."""
    stat = os.stat(path)
    if time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) < _RACY_NS:
        return _read(os.fspath(path))
    version = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    return _remembered(os.fspath(path), version)


_RACY_NS = 2_000_000_000


@lru_cache(maxsize=16384)
def _remembered(path: str, version: tuple[int, int, int, int, int]) -> str:
    return _read(path)


def _read(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
