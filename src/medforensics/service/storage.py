"""Content-addressed storage of uploaded inputs, and where each analysis keeps its artefacts.

An input's bytes live once under ``blobs/<first two hex>/<sha256>`` however many analyses sent
them; files are made read-only because workers hard-link them into their work folders.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_CHUNK_BYTES = 1 << 20
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class SpooledInput:
    """An upload copied to the spool folder, hashed, not yet in the store."""

    path: Path
    sha256: str
    size: int


class UploadTooLarge(Exception):
    """The bytes received went past the limit while copying."""


class BlobStore:
    """Files named by the SHA-256 of their content."""

    def __init__(self, root: Path, spool: Path) -> None:
        self.root = root
        self.spool = spool

    def ensure_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.spool.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or not set(sha256) <= _HEX:
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def spool_stream(self, source: BinaryIO, limit: int | None = None) -> SpooledInput:
        """Copy ``source`` into a spool file, hashing as it goes.

        Raises:
            UploadTooLarge: if more than ``limit`` bytes arrive (the spool file is removed).
        """
        self.spool.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        handle, name = tempfile.mkstemp(prefix="upload-", dir=self.spool)
        path = Path(name)
        try:
            with os.fdopen(handle, "wb") as target:
                while chunk := source.read(_CHUNK_BYTES):
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise UploadTooLarge(size)
                    digest.update(chunk)
                    target.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return SpooledInput(path=path, sha256=digest.hexdigest(), size=size)

    def commit(self, spooled: SpooledInput) -> Path:
        """Move a spooled file into the store (or drop it when the content is already there)."""
        target = self.path_for(spooled.sha256)
        if target.is_file():
            spooled.path.unlink(missing_ok=True)
            # fresh mtime: a purge running now must not delete what a new analysis will read
            with contextlib.suppress(OSError):
                os.utime(target)
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(spooled.path, stat.S_IRUSR | stat.S_IRGRP)
        os.replace(spooled.path, target)
        return target

    def discard(self, spooled: SpooledInput) -> None:
        spooled.path.unlink(missing_ok=True)

    def delete(self, sha256: str, older_than_s: float = 0.0) -> bool:
        """Remove a blob, only if untouched for ``older_than_s`` seconds; True when removed."""
        path = self.path_for(sha256)
        try:
            if older_than_s > 0 and time.time() - path.stat().st_mtime < older_than_s:
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when empty
        return True

    def hashes(self) -> Iterator[str]:
        """Every digest in the store (for purges and checks)."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir():
                for path in sorted(folder.iterdir()):
                    if len(path.name) == 64 and set(path.name) <= _HEX:
                        yield path.name

    def clean_spool(self) -> int:
        """Remove spool files left by a crash; returns how many."""
        if not self.spool.is_dir():
            return 0
        removed = 0
        for path in self.spool.iterdir():
            with contextlib.suppress(OSError):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed += 1
        return removed


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (same file system), else copy it."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def artefact_dir(root: Path, analysis_id: str, attempt: int) -> Path:
    """Artefacts of one attempt: a retried job never writes over a stale attempt's files."""
    return root / analysis_id / f"attempt-{attempt}"
