"""Write tampered pixels back into copies of the original DICOM files, as an attacker would.

Only the value of (7FE0,0010) *Pixel Data* changes. The new value is spliced into the original
file's bytes, so the preamble, the file meta group, every other element (private tags and
sequences included) and their encoding stay byte-identical: the file metadata gives nothing
away. That holds for little and big endian, implicit and explicit VR, and 1-bit data; in a
deflated file the data set is inflated, spliced and deflated again, so it is the inflated data
set that stays byte-identical. Uncompressed results are decoded once more before they are
written and refused unless they read back as the tampered values. Compressed files are
re-encoded in their own transfer syntax (RLE natively, JPEG 2000 and JPEG-LS through pydicom's
pylibjpeg/pyjpegls plugins, losslessly); a syntax that cannot be re-encoded here raises
``WriteBackError`` instead of silently changing the syntax. The originals are never modified.
"""

from __future__ import annotations

import copy
import io
import zlib
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import pack_bits
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


def _read(source: Path | io.BytesIO) -> pydicom.Dataset:
    """Read a file; one without a meta header gets the syntax pydicom found (in memory only)."""
    ds = pydicom.dcmread(source, force=True)
    if not ds.file_meta.get("TransferSyntaxUID"):
        ds.file_meta.TransferSyntaxUID = transfer_syntax(ds)
    return ds


def transfer_syntax(ds: pydicom.Dataset) -> UID:
    """The file's transfer syntax; for a file without meta header, the encoding pydicom found."""
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid:
        return UID(str(uid))
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def native_pixel_bytes(
    stored: np.ndarray, ds: pydicom.Dataset, big_endian: bool, vr: str, dtype: np.dtype
) -> bytes:
    """``stored`` encoded as native (uncompressed) Pixel Data, padded to an even length.

    Colour data is written by plane when PlanarConfiguration is 1.

    1-bit data is packed eight pixels a byte, least significant bit first, with frames
    following each other bit by bit (PS3.5 8.1.1). In a big endian file, OW data of 8 bits or
    less is also swapped within each 16-bit word, the way a reader unswaps it.
    """
    bits = int(ds.get("BitsAllocated", 16))
    if int(ds.get("SamplesPerPixel", 1)) > 1 and int(ds.get("PlanarConfiguration", 0)) == 1:
        stored = np.moveaxis(stored, -1, -3)  # colour by plane: RRR...GGG...BBB...
    if bits == 1:
        value = pack_bits(np.asarray(stored, dtype=np.uint8).ravel(), pad=True)
    else:
        value = stored.astype(dtype.newbyteorder(">" if big_endian else "<")).tobytes()
        value += b"\0" * (len(value) % 2)
    if big_endian and vr == "OW" and bits <= 8:
        value = np.frombuffer(value, dtype="<u2").byteswap().tobytes()
    return value


def _splice(raw: bytes, start: int, old_length: int, value: bytes, big_endian: bool) -> bytes:
    """``raw`` with the native element value at ``start`` replaced, its length field updated."""
    if len(value) != old_length:
        length = len(value).to_bytes(4, "big" if big_endian else "little")
        raw = raw[: start - 4] + length + raw[start:]
    return raw[:start] + value + raw[start + old_length :]


def _meta_end(raw: bytes, source: Path) -> int:
    """Where the file meta group ends (its group length says), in a file with a preamble."""
    if raw[128:132] != b"DICM" or raw[132:138] != b"\x02\x00\x00\x00UL":
        raise WriteBackError(
            f"{source}: its deflated data set has no standard file meta header (preamble, DICM, "
            "group length), so the compressed part cannot be located; nothing was written"
        )
    return 144 + int.from_bytes(raw[140:144], "little")


def _deflate_level(body: bytes, compressed: bytes) -> int:
    """The zlib level that reproduces ``compressed`` from ``body``, else zlib's default (6)."""
    for level in (6, 9, 1, 5, 7, 8, 4, 3, 2, 0):
        deflater = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        if deflater.compress(body) + deflater.flush() == compressed:
            return level
    return 6


def _replace_deflated(raw: bytes, start: int, old_length: int, value: bytes, source: Path) -> bytes:
    """Replace Pixel Data inside a deflated data set: inflate, splice, deflate again.

    The file meta group (never deflated) and any bytes after the deflate stream stay as they
    were; the inflated data set is byte-identical except for Pixel Data, and it is deflated
    at the level that reproduces the original stream when one does.
    """
    end = _meta_end(raw, source)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw[end:])
    except zlib.error as exc:
        raise WriteBackError(f"{source}: its deflated data set is damaged ({exc})") from exc
    if not inflater.eof:
        raise WriteBackError(f"{source}: its deflated data set is truncated; nothing was written")
    trailing = inflater.unused_data
    compressed = raw[end : len(raw) - len(trailing)]
    level = _deflate_level(body, compressed)
    deflater = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    new_body = _splice(body, start, old_length, value, big_endian=False)
    return raw[:end] + deflater.compress(new_body) + deflater.flush() + trailing


def _check_round_trip(new_raw: bytes, stored: np.ndarray, source: Path, syntax: UID) -> None:
    """Refuse a write whose pixels would not read back exactly as ``stored``."""
    try:
        decoded = _read(io.BytesIO(new_raw)).pixel_array
    except Exception as exc:  # any decoder failure means the file would be unreadable
        raise WriteBackError(
            f"{source}: the rewritten {syntax.name} pixel data cannot be decoded ({exc}); "
            "nothing was written"
        ) from exc
    if decoded.shape != stored.shape or not np.array_equal(decoded, stored):
        raise WriteBackError(
            f"{source}: its {syntax.name} pixel data would not read back as the tampered values "
            "(an encoding this writer does not reproduce); nothing was written rather than a "
            "silently altered image"
        )


def replace_pixel_data(source: str | Path, destination: str | Path, stored: np.ndarray) -> Path:
    """Copy ``source`` to ``destination`` with only its Pixel Data value replaced.

    Native (uncompressed) files, big endian and 1-bit ones included, are spliced byte for
    byte; deflated files are spliced inside the inflated data set (see ``_replace_deflated``);
    encapsulated ones are re-encoded in their own syntax. Native and deflated results are
    decoded again before writing and refused unless they read back as ``stored`` exactly.

    Args:
        source: the original DICOM file (read, never written).
        destination: where the tampered copy goes; its folder is created.
        stored: the new stored values, ``(rows, cols)`` or ``(frames, rows, cols)`` like the
            decoded original, already clipped and cast (see ``to_stored``).

    Raises:
        WriteBackError: the file has no pixel data, the shape differs, its transfer syntax
            cannot be re-encoded here, or the result would not read back as ``stored``.
    """
    source, destination = Path(source), Path(destination)
    if source.resolve() == destination.resolve():
        raise WriteBackError(
            f"{source}: refusing to overwrite an original; write to another folder"
        )
    raw = source.read_bytes()
    try:
        ds = _read(source)
        syntax = transfer_syntax(ds)
        element = ds.get_item(PIXEL_DATA)
        if element is None:
            raise WriteBackError(f"{source}: has no Pixel Data to replace")
        vr = str(element.VR)
        original = ds.pixel_array
    except WriteBackError:
        raise
    except Exception as exc:  # pydicom and zlib raise many kinds for a damaged file
        raise WriteBackError(
            f"{source}: cannot be read or its pixels decoded ({exc}); it may be truncated or "
            "damaged, so nothing was written"
        ) from exc
    if stored.shape != original.shape:
        raise WriteBackError(
            f"{source}: tampered pixels have shape {stored.shape}, the file holds {original.shape}"
        )
    stored = stored.astype(original.dtype, copy=False)
    start = int(element.value_tell)  # type: ignore[attr-defined]
    old_length = len(element.value)
    if syntax in (*_NATIVE, DeflatedExplicitVRLittleEndian):
        big_endian = syntax == ExplicitVRBigEndian
        value = native_pixel_bytes(stored, ds, big_endian, vr, original.dtype)
        if syntax == DeflatedExplicitVRLittleEndian:
            new_raw = _replace_deflated(raw, start, old_length, value, source)
        else:
            new_raw = _splice(raw, start, old_length, value, big_endian)
        _check_round_trip(new_raw, stored, source, syntax)
    else:
        value = _encode(ds, stored, syntax, source, old_length)
        end = start + old_length
        if raw[end : end + 8] != _SEQUENCE_DELIMITER:
            raise WriteBackError(f"{source}: encapsulated Pixel Data does not end where expected")
        new_raw = raw[:start] + value + _SEQUENCE_DELIMITER + raw[end + 8 :]
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(new_raw)
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
