"""Extract zip archives safely into a temporary folder that is always deleted afterwards.

The whole archive is checked before a single byte is written: member count, declared sizes and
compression ratios (zip bombs), member names that would land outside the folder (absolute
paths, ``..``, drive letters, backslash tricks), symlinks and encrypted members. Extraction then
counts the bytes actually written, so headers that lie about sizes are caught too. Nested zips
are left as files.
"""

from __future__ import annotations

import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from medforensics.io.types import ReadError
from medforensics.utils.text import human_size as _size

_CHUNK_BYTES = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
_NOT_EXTRACTED = "the archive was not extracted"
# zipfile raises any of these on damaged archives
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error)


@dataclass(frozen=True)
class ZipLimits:
    """What an archive may declare before it is refused as a probable zip bomb.

    Attributes:
        max_members: most entries (files and folders).
        max_total_bytes: most uncompressed bytes over all members.
        max_member_bytes: most uncompressed bytes in one member.
        max_ratio: highest uncompressed/compressed ratio, per member and overall.
        ratio_floor_bytes: members (and archives) smaller than this are not ratio-checked;
            small files of padding compress extremely well and are harmless.
    """

    max_members: int = 20000
    max_total_bytes: int = 8 * 2**30
    max_member_bytes: int = 2 * 2**30
    max_ratio: float = 200.0
    ratio_floor_bytes: int = 2**20


@contextmanager
def extract_zip(path: Path, limits: ZipLimits = ZipLimits()) -> Iterator[Path]:
    """Validate and extract a zip archive, yield the folder, delete it on exit.

    Args:
        path: the zip file.
        limits: what the archive may declare; the defaults suit a study of a few thousand
            DICOM files.

    Yields:
        A fresh temporary folder holding the members under their archive names.

    Raises:
        ReadError: if the archive is damaged, encrypted, a probable zip bomb, or has a member
            that would be written outside the folder; nothing is left on disk.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = validated_members(path, archive, limits)
            root = Path(tempfile.mkdtemp(prefix="medforensics-zip-"))
            try:
                _extract_members(path, archive, members, root, limits)
            except BaseException:
                shutil.rmtree(root, ignore_errors=True)
                raise
    except ReadError:
        raise
    except _ZIP_ERRORS as exc:
        raise ReadError(
            path,
            f"cannot be read as a zip archive ({exc}); it is damaged or truncated. "
            "Copy or create the archive again",
        ) from exc
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def member_name(extracted_root: Path, file: Path) -> str:
    """The archive name (``folder/file.dcm``) of a file extracted under ``extracted_root``.

    Raises:
        ValueError: if ``file`` is not inside ``extracted_root``.
    """
    try:
        return Path(file).relative_to(extracted_root).as_posix()
    except ValueError:
        # one of the two may have been resolved (e.g. /tmp behind a symlink) and not the other
        return Path(file).resolve().relative_to(Path(extracted_root).resolve()).as_posix()


def validated_members(
    path: Path, archive: zipfile.ZipFile, limits: ZipLimits
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Every member with the relative path it will get; raises on the first problem found."""
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise ReadError(
            path,
            f"the archive has {len(infos):,} members, more than the limit of "
            f"{limits.max_members:,}; {_NOT_EXTRACTED}. Split it into smaller archives",
        )
    members: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    seen: set[PurePosixPath] = set()
    total_bytes = total_compressed = 0
    for info in infos:
        relative = _safe_relative_path(path, info)
        _check_member_kind(path, info)
        _check_member_size(path, info, limits)
        if relative in seen and not info.is_dir():
            raise ReadError(
                path,
                f"zip member '{info.filename}' appears twice, so the archive has two different "
                f"contents for one file; {_NOT_EXTRACTED}",
            )
        seen.add(relative)
        total_bytes += info.file_size
        total_compressed += info.compress_size
        members.append((info, relative))
    if total_bytes > limits.max_total_bytes:
        raise ReadError(
            path,
            f"the archive declares {_size(total_bytes)} uncompressed, more than the limit of "
            f"{_size(limits.max_total_bytes)}; it may be a zip bomb and {_NOT_EXTRACTED}",
        )
    if total_bytes >= limits.ratio_floor_bytes and total_bytes > limits.max_ratio * max(
        total_compressed, 1
    ):
        raise ReadError(
            path,
            f"the archive expands {total_bytes / max(total_compressed, 1):.0f} times "
            f"({_size(total_compressed)} to {_size(total_bytes)}), more than the limit of "
            f"{limits.max_ratio:g}; it may be a zip bomb and {_NOT_EXTRACTED}",
        )
    return members


def _safe_relative_path(path: Path, info: zipfile.ZipInfo) -> PurePosixPath:
    """The member's path below the extraction folder, or ReadError if it would escape it."""
    name = info.filename
    # Windows tools write backslashes; treat them as separators so '..\\x' is caught too
    parts = name.replace("\\", "/").split("/")
    escapes = (
        name.startswith(("/", "\\")) or bool(_DRIVE.match(name)) or ".." in parts or "\x00" in name
    )
    if escapes:
        raise ReadError(
            path,
            f"zip member '{name}' would be written outside the archive folder; "
            f"{_NOT_EXTRACTED}. The archive may be malicious",
        )
    kept = [part for part in parts if part not in ("", ".")]
    if not kept and not info.is_dir():
        raise ReadError(path, f"zip member '{name}' has no file name; {_NOT_EXTRACTED}")
    return PurePosixPath(*kept) if kept else PurePosixPath(".")


def _check_member_kind(path: Path, info: zipfile.ZipInfo) -> None:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ReadError(
            path,
            f"zip member '{info.filename}' is a symbolic link, which could point outside the "
            f"archive folder; {_NOT_EXTRACTED}. Zip the files themselves, not links",
        )
    if info.flag_bits & 0x1:
        raise ReadError(
            path,
            f"zip member '{info.filename}' is password-protected; {_NOT_EXTRACTED}. "
            "Decrypt the archive and try again",
        )


def _check_member_size(path: Path, info: zipfile.ZipInfo, limits: ZipLimits) -> None:
    if info.file_size > limits.max_member_bytes:
        raise ReadError(
            path,
            f"zip member '{info.filename}' declares {_size(info.file_size)} uncompressed, more "
            f"than the limit of {_size(limits.max_member_bytes)}; it may be a zip bomb and "
            f"{_NOT_EXTRACTED}",
        )
    if info.file_size < limits.ratio_floor_bytes:
        return
    ratio = info.file_size / info.compress_size if info.compress_size else float("inf")
    if ratio > limits.max_ratio:
        raise ReadError(
            path,
            f"zip member '{info.filename}' expands {ratio:.0f} times ({_size(info.compress_size)} "
            f"to {_size(info.file_size)}), more than the limit of {limits.max_ratio:g}; it may be "
            f"a zip bomb and {_NOT_EXTRACTED}",
        )


def _extract_members(
    path: Path,
    archive: zipfile.ZipFile,
    members: list[tuple[zipfile.ZipInfo, PurePosixPath]],
    root: Path,
    limits: ZipLimits,
) -> None:
    """Write every member below ``root``, never more bytes than its header declared."""
    resolved_root = root.resolve()
    total_written = 0
    for info, relative in members:
        target = root.joinpath(*relative.parts)
        if not target.resolve().is_relative_to(resolved_root):
            raise ReadError(
                path,
                f"zip member '{info.filename}' would be written outside the archive folder; "
                "the archive was not fully extracted. The archive may be malicious",
            )
        try:
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            total_written += _copy_member(path, archive, info, target)
        except FileExistsError as exc:
            raise ReadError(
                path,
                f"zip member '{info.filename}' would overwrite another member (names that "
                "differ only in case or separators?); the archive was not fully extracted",
            ) from exc
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise ReadError(
                path,
                f"zip member '{info.filename}' does not match its header ({exc}); the archive "
                "is damaged or was altered and was not fully extracted. Create it again",
            ) from exc
        except NotImplementedError as exc:
            raise ReadError(
                path,
                f"zip member '{info.filename}' uses a compression method Python cannot "
                f"decompress ({exc}); re-create the archive with standard (deflate) compression",
            ) from exc
        except OSError as exc:
            raise ReadError(
                path,
                f"zip member '{info.filename}' cannot be written to the temporary folder "
                f"({exc}); check free disk space, then try again",
            ) from exc
        if total_written > limits.max_total_bytes:
            raise ReadError(
                path,
                f"the archive expanded beyond the limit of {_size(limits.max_total_bytes)}; "
                "its headers understate its size and it was not fully extracted",
            )


def _copy_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> int:
    """Stream one member to ``target`` (which must not exist); return the bytes written."""
    written = 0
    with archive.open(info) as source, target.open("xb") as destination:
        while chunk := source.read(_CHUNK_BYTES):
            written += len(chunk)
            if written > info.file_size:
                raise ReadError(
                    path,
                    f"zip member '{info.filename}' holds more data than its header declares "
                    f"({_size(info.file_size)}); it may be a zip bomb and the archive was not "
                    "fully extracted",
                )
            destination.write(chunk)
    return written
