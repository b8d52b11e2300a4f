"""Write tampered pixels back into copies of the original DICOM files, as an attacker would.

Only the value of (7FE0,0010) *Pixel Data* changes. The new value is spliced into the original
file's bytes, so the preamble, the file meta group, every other element (private tags and
sequences included) and their encoding stay byte-identical: the file metadata gives nothing
away. Compressed files are re-encoded in their own transfer syntax (RLE natively, JPEG 2000 and
JPEG-LS through pydicom's pylibjpeg/pyjpegls plugins, losslessly); a syntax that cannot be
re-encoded here raises ``WriteBackError`` instead of silently changing the syntax. The
originals are never modified.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
from pydicom.tag import Tag
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from medforensics.io.types import ImageVolume

PIXEL_DATA = Tag(0x7FE0, 0x0010)
#: (FFFE,E0DD) sequence delimitation item, little endian, zero length
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_NATIVE = (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian)
#: modalities whose volumes hold rescaled (physical) values, as the readers produce them
PHYSICAL_MODALITIES = ("CT", "PT")


class WriteBackError(ValueError):
    """A tampered image cannot be written back without changing something an attacker would keep."""


def stored_range(ds: pydicom.Dataset) -> tuple[int, int]:
    """Smallest and largest stored value BitsStored and PixelRepresentation allow."""
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def to_stored(
    values: np.ndarray, ds: pydicom.Dataset, modality: str, dtype: np.dtype
) -> np.ndarray:
    """Physical values back to stored values with the file's own rescale, clipped and cast."""
    values = np.asarray(values, dtype=np.float64)
    if modality in PHYSICAL_MODALITIES:
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        values = (values - intercept) / slope
    low, high = stored_range(ds)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        low, high = max(low, int(info.min)), min(high, int(info.max))
    return np.clip(np.rint(values), low, high).astype(dtype)


def _encode(
    ds: pydicom.Dataset, stored: np.ndarray, syntax: UID, source: Path, old_size: int
) -> bytes:
    """Encapsulated Pixel Data for ``stored`` in ``syntax``, without the closing delimiter.

    Lossy JPEG 2000 is re-encoded at the original file's compression ratio, so the tampered
    file is about as large as the original.
    """
    scratch = copy.deepcopy(ds)
    ratios: list[float] | None = None
    if syntax == JPEG2000:
        ratio = stored.size * int(ds.get("BitsAllocated", 16)) / 8 / max(old_size, 1)
        ratios = [max(float(ratio), 1.0)]
    try:
        scratch.compress(syntax, stored, generate_instance_uid=False, j2k_cr=ratios)
    except (RuntimeError, NotImplementedError, ValueError) as exc:
        raise WriteBackError(
            f"{source}: its pixel data is stored as {syntax.name} ({syntax}), which cannot be "
            f"re-encoded here ({exc}). Writing it in another transfer syntax would give the "
            "tampering away, so nothing was written; install an encoder for this syntax "
            "(pylibjpeg-openjpeg for JPEG 2000, pyjpegls for JPEG-LS) or choose another input."
        ) from exc
    return bytes(scratch.PixelData)


def replace_pixel_data(source: str | Path, destination: str | Path, stored: np.ndarray) -> Path:
    """Copy ``source`` to ``destination`` with only its Pixel Data value replaced.

    Args:
        source: the original DICOM file (read, never written).
        destination: where the tampered copy goes; its folder is created.
        stored: the new stored values, ``(rows, cols)`` or ``(frames, rows, cols)`` like the
            decoded original, already clipped and cast (see ``to_stored``).

    Raises:
        WriteBackError: the file has no pixel data, the shape differs, or its transfer syntax
            cannot be re-encoded here.
    """
    source, destination = Path(source), Path(destination)
    if source.resolve() == destination.resolve():
        raise WriteBackError(
            f"{source}: refusing to overwrite an original; write to another folder"
        )
    raw = source.read_bytes()
    ds = pydicom.dcmread(source)
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    element = ds.get_item(PIXEL_DATA)
    if element is None:
        raise WriteBackError(f"{source}: has no Pixel Data to replace")
    original = ds.pixel_array
    if stored.shape != original.shape:
        raise WriteBackError(
            f"{source}: tampered pixels have shape {stored.shape}, the file holds {original.shape}"
        )
    stored = stored.astype(original.dtype, copy=False)
    start = int(element.value_tell)  # type: ignore[attr-defined]
    old_length = len(element.value)
    if syntax == DeflatedExplicitVRLittleEndian:
        # the whole data set is zlib-compressed, so bytes cannot be spliced: let pydicom write it
        ds.PixelData = stored.astype(original.dtype.newbyteorder("<")).tobytes()
        destination.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(destination)
        return destination
    if syntax in _NATIVE:
        order: Literal["<", ">"] = ">" if syntax == ExplicitVRBigEndian else "<"
        value = stored.astype(original.dtype.newbyteorder(order)).tobytes()
        if int(ds.get("BitsAllocated", 16)) == 1:
            value = np.packbits(stored.ravel(), bitorder="little").tobytes()
        value += b"\0" * (len(value) % 2)
        end = start + old_length
        if len(value) != old_length:
            length = len(value).to_bytes(4, "big" if order == ">" else "little")
            raw = raw[: start - 4] + length + raw[start:]
    else:
        value = _encode(ds, stored, syntax, source, old_length)
        end = start + old_length
        if raw[end : end + 8] != _SEQUENCE_DELIMITER:
            raise WriteBackError(f"{source}: encapsulated Pixel Data does not end where expected")
        end += 8
        value += _SEQUENCE_DELIMITER
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(raw[:start] + value + raw[end:])
    return destination


def write_tampered(
    volume: ImageVolume, pixels: np.ndarray, out_dir: str | Path, root: str | Path | None = None
) -> list[Path]:
    """Write every source file of ``volume`` into ``out_dir`` with ``pixels`` as its pixel data.

    File names and sub-folders are kept relative to ``root`` (default: the folder the source
    files share). Untouched slices are written too, so the output is a complete series.

    Args:
        volume: the authentic volume, read from DICOM files (``volume.slices`` must name them).
        pixels: tampered ``(slices, rows, cols)`` values in the volume's units.
        out_dir: a new folder; it must not be where the originals are.
        root: folder the relative output paths are taken from.

    Returns:
        The written paths, one per source file.
    """
    if not volume.slices or any(ref.sop_instance_uid is None for ref in volume.slices):
        raise WriteBackError(
            f"{volume.input}: not read from DICOM files, so there is nothing to write back"
        )
    if pixels.shape != volume.shape:
        raise WriteBackError(
            f"{volume.input}: tampered pixels {pixels.shape} differ from {volume.shape}"
        )
    out = Path(out_dir)
    files = volume.source_files
    base = Path(root) if root is not None else _common_folder(files)
    if out.resolve() == base.resolve():
        raise WriteBackError(
            f"{out}: is the folder of the originals; write the tampered copy elsewhere"
        )
    written = []
    for path in files:
        indices = [k for k, ref in enumerate(volume.slices) if ref.source_file == path]
        frames = [volume.slices[k].frame for k in indices]
        ds = pydicom.dcmread(path)
        original = ds.pixel_array
        stored = original.copy()
        values = to_stored(pixels[indices], ds, volume.modality, original.dtype)
        if original.ndim == 2:
            stored = values[0]
        else:
            for value, frame in zip(values, frames, strict=True):
                stored[frame if frame is not None else 0] = value
        written.append(replace_pixel_data(path, out / path.relative_to(base), stored))
    return written


def _common_folder(files: list[Path]) -> Path:
    parents = [p.resolve().parent for p in files]
    common = parents[0]
    while not all(common == p or common in p.parents for p in parents):
        common = common.parent
    return common
