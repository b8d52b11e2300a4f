"""Check uploaded files before anything is queued: size, content (sniffed), zip safety.

The file name is never trusted: each upload's format comes from its first bytes
(``medforensics.io.sniff``). A zip is opened and its central directory checked against the
service's limits (member count, uncompressed size, compression ratio), then by
``medforensics.io.archive``'s own validation (path traversal, symlinks, encryption), all before
a byte is extracted; extraction itself happens later, in the worker, through the same module.
"""

from __future__ import annotations

import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from medforensics.io.archive import ZipLimits
from medforensics.io.sniff import Format, sniff_format
from medforensics.io.types import ReadError
from medforensics.service.config import ServiceSettings
from medforensics.service.jobs import InputFile
from medforensics.service.storage import BlobStore, SpooledInput, UploadTooLarge
from medforensics.utils.text import human_size

#: formats the loader reads (TIFF included, though the API documents PNG/JPEG)
ACCEPTED_FORMATS: frozenset[Format] = frozenset({"dicom", "nifti", "png", "jpeg", "tiff", "zip"})
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


class UploadRejected(Exception):
    """An upload the service refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class CheckedUpload:
    """An upload that passed every check, still in the spool folder."""

    name: str
    spooled: SpooledInput
    format: Format

    def as_input(self) -> InputFile:
        return InputFile(self.name, self.spooled.sha256, self.spooled.size, self.format)


def zip_limits(settings: ServiceSettings) -> ZipLimits:
    return ZipLimits(
        max_members=settings.zip_max_members,
        max_total_bytes=settings.zip_max_total_bytes,
        max_member_bytes=settings.zip_max_total_bytes,
        max_ratio=settings.zip_max_ratio,
    )


def check_uploads(
    files: Sequence[tuple[str, BinaryIO]], blobs: BlobStore, settings: ServiceSettings
) -> list[CheckedUpload]:
    """Spool, hash and check every file; on the first refusal nothing is kept.

    Raises:
        UploadRejected: 413 (too large, zip bomb), 415 (not an image we read), 422 (no files,
            too many, an unsafe or damaged zip).
    """
    if not files:
        raise UploadRejected(
            422, "no_files", "no file was uploaded: send one or more files in the 'files' field"
        )
    if len(files) > settings.max_files:
        raise UploadRejected(
            422,
            "too_many_files",
            f"{len(files)} files were sent, more than the limit of {settings.max_files}; "
            "zip a large series into one archive",
        )
    checked: list[CheckedUpload] = []
    remaining = settings.upload_limit_bytes
    try:
        for index, (raw_name, stream) in enumerate(files):
            name = raw_name or f"input-{index + 1}"
            try:
                spooled = blobs.spool_stream(stream, limit=remaining)
            except UploadTooLarge as exc:
                raise UploadRejected(
                    413, "too_large", _too_large(settings.upload_limit_bytes)
                ) from exc
            remaining -= spooled.size
            checked.append(CheckedUpload(name, spooled, "unknown"))
            fmt = _content_format(name, spooled)
            if fmt == "zip":
                check_zip(spooled.path, name, settings)
            checked[-1] = CheckedUpload(name, spooled, fmt)
    except BaseException:
        for upload in checked:
            blobs.discard(upload.spooled)
        raise
    return checked


def _too_large(limit: int) -> str:
    return (
        f"the upload is larger than the limit of {human_size(limit)}; split it into several "
        "analyses or ask the operator to raise MEDFORENSICS_UPLOAD_LIMIT_BYTES"
    )


def _content_format(name: str, spooled: SpooledInput) -> Format:
    if spooled.size == 0:
        raise UploadRejected(415, "unsupported", f"file '{name}' is empty (0 bytes)")
    fmt = sniff_format(spooled.path)
    if fmt not in ACCEPTED_FORMATS:
        raise UploadRejected(
            415,
            "unsupported",
            f"file '{name}' is not an image this service reads: its content is not DICOM, "
            "NIfTI, PNG, JPEG, TIFF or a zip of those (the format is read from the content, "
            "not the file name)",
        )
    return fmt


def check_zip(path: Path, name: str, settings: ServiceSettings) -> None:
    """Refuse zip bombs (413), unsafe or damaged archives and nested zips (422), and archives
    holding no image this service reads (415)."""
    limits = zip_limits(settings)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            _check_zip_sizes(name, infos, limits)
            from medforensics.io.archive import validated_members

            try:
                validated_members(Path(name), archive, limits)
            except ReadError as exc:
                raise UploadRejected(422, "unsafe_zip", str(exc)) from exc
            _check_zip_members(name, archive, infos)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, OSError) as exc:
        raise UploadRejected(
            422,
            "damaged_zip",
            f"file '{name}' looks like a zip archive but cannot be read ({exc}); it is damaged "
            "or truncated: create it again",
        ) from exc


def _check_zip_sizes(name: str, infos: list[zipfile.ZipInfo], limits: ZipLimits) -> None:
    if len(infos) > limits.max_members:
        raise UploadRejected(
            413,
            "zip_members",
            f"zip '{name}' has {len(infos):,} members, more than the limit of "
            f"{limits.max_members:,}; split it into smaller archives",
        )
    total = sum(info.file_size for info in infos)
    packed = sum(info.compress_size for info in infos)
    if total > limits.max_total_bytes:
        raise UploadRejected(
            413,
            "zip_size",
            f"zip '{name}' declares {human_size(total)} uncompressed, more than the limit of "
            f"{human_size(limits.max_total_bytes)}",
        )
    suspicious = [
        info
        for info in infos
        if info.file_size >= limits.ratio_floor_bytes
        and info.file_size > limits.max_ratio * max(info.compress_size, 1)
    ]
    if suspicious or (
        total >= limits.ratio_floor_bytes and total > limits.max_ratio * max(packed, 1)
    ):
        raise UploadRejected(
            413,
            "zip_bomb",
            f"zip '{name}' expands more than {limits.max_ratio:g} times; it looks like a zip "
            "bomb and was refused",
        )


def _check_zip_members(name: str, archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
    """No nested archives, and at least one member that is an image we read."""
    found_image = False
    for info in infos:
        if info.is_dir():
            continue
        with archive.open(info) as member:
            head = member.read(1024)
        if head[:4] in _ZIP_MAGIC:
            raise UploadRejected(
                422,
                "nested_zip",
                f"zip '{name}' holds another archive ('{info.filename}'); zips inside zips are "
                "not accepted: put the images themselves in one archive",
            )
        if not found_image:
            found_image = _member_is_image(archive, info, head)
    if not found_image:
        raise UploadRejected(
            415,
            "unsupported",
            f"zip '{name}' holds no DICOM, NIfTI, PNG, JPEG or TIFF image (member contents were "
            "checked, not their names)",
        )


def _member_is_image(archive: zipfile.ZipFile, info: zipfile.ZipInfo, head: bytes) -> bool:
    if info.filename.lower().endswith(_DICOM_SUFFIXES):
        return True  # the loader lets pydicom judge these, so do we
    if head[:2] == b"\x1f\x8b":  # gzip: the NIfTI header is inside, read a little more
        with archive.open(info) as member:
            head = member.read(1 << 16)
    with tempfile.NamedTemporaryFile(prefix="medforensics-sniff-") as probe:
        probe.write(head)
        probe.flush()
        return sniff_format(probe.name) in ACCEPTED_FORMATS - {"zip"}
