"""Checks on a received C-STORE data set before it is acknowledged.

pydicom reads a truncated data set without complaint (a short last value, a missing element), so
the SCP walks the encoded elements itself: every value must be as long as its header says and the
last element must end where the data set ends. A data set that passes is then checked for the UIDs
the spool needs, and against the C-STORE request that carried it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filereader import data_element_generator

#: C-STORE failure statuses (PS3.4 B.2.3) used by the gateway
STATUS_CANNOT_UNDERSTAND = 0xC210
STATUS_DOES_NOT_MATCH = 0xA900
UNDEFINED_LENGTH = 0xFFFFFFFF


class RejectedInstance(Exception):
    """A received data set that must not be acknowledged; ``status`` says why in DIMSE terms."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class InstanceKeys:
    """The UIDs the spool files an instance under."""

    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str


def structural_problem(
    stream: bytes, *, implicit_vr: bool, little_endian: bool, deflated: bool = False
) -> str | None:
    """Why the encoded data set is not whole, or None when every element is complete."""
    if deflated:
        try:
            stream = zlib.decompress(stream, -zlib.MAX_WBITS)
        except zlib.error as exc:
            return f"the deflated data set cannot be inflated ({exc})"
    if not stream:
        return "the data set is empty"
    handle = BytesIO(stream)
    end = 0
    try:
        for raw in data_element_generator(handle, implicit_vr, little_endian, defer_size=None):
            length = getattr(raw, "length", UNDEFINED_LENGTH)
            value = raw.value
            if length != UNDEFINED_LENGTH and isinstance(value, bytes) and len(value) != length:
                return (
                    f"truncated data set: element {raw.tag} has {len(value)} of the {length} "
                    "bytes its header announces"
                )
            end = handle.tell()
    except (EOFError, ValueError, NotImplementedError, struct.error, KeyError) as exc:
        return f"the data set cannot be parsed ({type(exc).__name__}: {exc})"
    if end != len(stream):
        return (
            f"truncated data set: it ends inside an element ({len(stream) - end} bytes after "
            "the last complete one)"
        )
    return None


def pixel_problem(dataset: Dataset, compressed: bool) -> str | None:
    """Why native (uncompressed) pixel data cannot hold the image its header describes."""
    if compressed or "PixelData" not in dataset:
        return None
    try:
        rows, cols = int(dataset.Rows), int(dataset.Columns)
        samples = int(dataset.get("SamplesPerPixel", 1) or 1)
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        bits = int(dataset.BitsAllocated)
        stored = len(dataset.PixelData)
    except Exception as exc:
        return f"the image attributes cannot be read ({type(exc).__name__}: {exc})"
    expected = (rows * cols * samples * frames * bits + 7) // 8
    if stored < expected:
        return (
            f"truncated image: PixelData holds {stored} bytes, {rows}x{cols}x{samples}x"
            f"{frames} pixels of {bits} bits need {expected}"
        )
    return None


def instance_keys(
    dataset: Dataset, affected_sop_class: str, affected_sop_instance: str
) -> InstanceKeys:
    """The UIDs of a decoded data set, checked against its C-STORE request."""
    try:
        keys = InstanceKeys(
            sop_class_uid=str(dataset.get("SOPClassUID", "") or ""),
            sop_instance_uid=str(dataset.get("SOPInstanceUID", "") or ""),
            study_uid=str(dataset.get("StudyInstanceUID", "") or ""),
            series_uid=str(dataset.get("SeriesInstanceUID", "") or ""),
        )
    except Exception as exc:  # a value pydicom cannot convert: the data set is not understood
        raise RejectedInstance(
            STATUS_CANNOT_UNDERSTAND, f"the data set cannot be decoded ({exc})"
        ) from exc
    keywords = {
        "sop_class_uid": "SOPClassUID",
        "sop_instance_uid": "SOPInstanceUID",
        "study_uid": "StudyInstanceUID",
        "series_uid": "SeriesInstanceUID",
    }
    missing = [keywords[name] for name, value in vars(keys).items() if not value.strip()]
    if missing:
        raise RejectedInstance(
            STATUS_DOES_NOT_MATCH, f"the data set lacks {', '.join(sorted(missing))}"
        )
    if affected_sop_instance and keys.sop_instance_uid != affected_sop_instance:
        raise RejectedInstance(
            STATUS_DOES_NOT_MATCH,
            f"SOPInstanceUID {keys.sop_instance_uid} differs from the request's "
            f"Affected SOP Instance UID {affected_sop_instance}",
        )
    if affected_sop_class and keys.sop_class_uid != affected_sop_class:
        raise RejectedInstance(
            STATUS_DOES_NOT_MATCH,
            f"SOPClassUID {keys.sop_class_uid} differs from the request's "
            f"Affected SOP Class UID {affected_sop_class}",
        )
    return keys
