"""``utils.hashing.file_sha256``: right digest, read once per file version, never stale."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from medforensics.utils import hashing


def _age(path: Path, seconds: int) -> None:
    """Set the file's times back so that it no longer counts as just changed."""
    past = os.stat(path).st_mtime_ns - seconds * 1_000_000_000
    os.utime(path, ns=(past, past))


def test_digest_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(os.urandom(3 * (1 << 20) + 17))
    assert hashing.file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_unchanged_file_is_read_once_and_a_changed_one_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "b.bin"
    path.write_bytes(b"first version")
    reads: list[str] = []
    real_read = hashing._read
    monkeypatch.setattr(hashing, "_read", lambda p: reads.append(p) or real_read(p))
    hashing._remembered.cache_clear()

    first = hashing.file_sha256(path)
    assert len(reads) == 1  # just written: racily clean, read and not remembered
    # the change time cannot be set back, so a remembered digest needs a file that really is old:
    # shorten the racy window instead of sleeping
    monkeypatch.setattr(hashing, "_RACY_NS", 0)
    assert hashing.file_sha256(path) == first and hashing.file_sha256(path) == first
    assert len(reads) == 2  # read once more to remember it, then answered from memory

    monkeypatch.setattr(hashing, "_RACY_NS", 2_000_000_000)
    path.write_bytes(b"other version")  # same size, same inode, maybe the same time tick
    _age(path, 10)  # even with the modification time set back, the change time is recent
    assert hashing.file_sha256(path) == hashlib.sha256(b"other version").hexdigest()


def test_a_file_changed_just_now_is_never_answered_from_memory(tmp_path: Path) -> None:
    path = tmp_path / "c.bin"
    path.write_bytes(b"aaaa")
    hashing._remembered.cache_clear()
    assert hashing.file_sha256(path) == hashlib.sha256(b"aaaa").hexdigest()
    path.write_bytes(b"bbbb")  # same size, possibly the same timestamp tick
    assert hashing.file_sha256(path) == hashlib.sha256(b"bbbb").hexdigest()
