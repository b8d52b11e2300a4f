"""Tell formats apart by content, not by file name."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Literal

Format = Literal["dicom", "nifti", "png", "jpeg", "tiff", "zip", "unknown"]

_NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img")


def _looks_like_nifti_header(header: bytes) -> bool:
    if len(header) < 348:
        return False
    sizeof_hdr_le = int.from_bytes(header[0:4], "little")
    sizeof_hdr_be = int.from_bytes(header[0:4], "big")
    if 348 in (sizeof_hdr_le, sizeof_hdr_be):
        return header[344:348] in (b"n+1\x00", b"ni1\x00")
    if 540 in (sizeof_hdr_le, sizeof_hdr_be):
        return header[4:8] in (b"n+2\x00", b"ni2\x00")
    return False


def _looks_like_raw_dicom(head: bytes) -> bool:
    """DICOM without the 128-byte preamble: starts with a group 0008 or 0002 element."""
    if len(head) < 8:
        return False
    group = int.from_bytes(head[0:2], "little")
    element = int.from_bytes(head[2:4], "little")
    if group not in (0x0002, 0x0008):
        return False
    # Explicit VR: two upper-case letters; implicit VR: a 4-byte length
    vr = head[4:6]
    return (vr.isalpha() and vr.isupper()) or element < 0x0100


def sniff_format(path: str | Path) -> Format:
    """Return the format of ``path`` from its first bytes.

    Raises:
        OSError: if the file cannot be opened.
    """
    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(1024)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as handle:
                inner = handle.read(1024)
        except (OSError, EOFError):
            return "unknown"
        return "nifti" if _looks_like_nifti_header(inner) else "unknown"
    if _looks_like_nifti_header(head):
        return "nifti"
    if _looks_like_raw_dicom(head):
        return "dicom"
    return "unknown"
