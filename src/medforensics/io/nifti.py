"""Read NIfTI-1, NIfTI-2 and Analyze 7.5 images into ``ImageVolume`` objects with nibabel.

Axis contract: the slice index is the third array axis, rows are the first and columns the
second, so ``pixels[k, i, j] == data[i, j, k]`` and ``spacing == (zooms[2], zooms[0], zooms[1])``.
Nothing is resampled or reoriented. A 4D file contributes its first volume only.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
import zlib
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.analyze import AnalyzeImage
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from medforensics.io.types import ImageVolume, ReadError, SliceRef
from medforensics.utils.text import human_size as _size

#: Largest voxel array read, in bytes (float32 output or the stored type if wider); a header
#: declaring more is refused before any voxel is read.
MAX_BYTES = 4 * 2**30

# Names nibabel's ``load`` recognises; other names (content sniffed as NIfTI) are read as streams
_NIBABEL_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img", ".hdr.gz", ".img.gz")
_READ_ERRORS = (
    ImageFileError,
    HeaderDataError,
    OSError,
    EOFError,
    ValueError,
    zlib.error,
    struct.error,
)
_BT601 = (0.299, 0.587, 0.114)
_UNIT_TO_MM = {"mm": 1.0, "meter": 1000.0, "micron": 0.001}


def guess_modality(pixels: np.ndarray) -> str:
    """``CT`` when the values look like Hounsfield units (air near -1000), else ``MR``.

    NIfTI records no modality. Most NIfTI volumes are MR, but CT is often converted to NIfTI
    too, and a CT routed to an MR model would be judged by the wrong model. Air in HU sits at
    -1000 (and padding at -1024 or below); MR magnitude images are never negative.
    """
    sample = pixels[:: max(1, pixels.shape[0] // 16)]
    sample = sample[np.isfinite(sample)]  # NaN outside a mask is common in processed NIfTI
    if sample.size == 0:
        return "MR"
    low, high = np.percentile(sample, [1, 99.5])
    return "CT" if -1100.0 <= low <= -850.0 and high > 0 else "MR"


def read_nifti(path: Path, input_label: str, modality: str | None = None) -> ImageVolume:
    """Read a ``.nii``, ``.nii.gz`` or Analyze ``.hdr``/``.img`` image.

    Args:
        path: the image file (for Analyze, either file of the pair).
        input_label: the path as the user gave it, stored in ``ImageVolume.input``.
        modality: DICOM modality code to record; NIfTI carries none, so by default it is
            guessed from the values (``guess_modality``: CT when they look like HU, else MR).

    Returns:
        A volume whose ``pixels[k, i, j]`` is ``data[i, j, k]`` with ``scl_slope``/``scl_inter``
        applied, as float32.

    Raises:
        ReadError: if the file is not NIfTI/Analyze, is damaged or truncated, has more than
            four dimensions, complex voxels, or would need more than ``MAX_BYTES`` of memory.
    """
    path = Path(path)
    with ExitStack() as open_files:
        image = _load(path, open_files)
        shape = _spatial_shape(path, image)
        _check_size(path, image, shape)
        data = _read_first_volume(path, image, shape)
    pixels = np.ascontiguousarray(data.transpose(2, 0, 1), dtype=np.float32)
    channels = len(image.get_data_dtype().names or ()) or 1
    problems = []
    if len(shape) == 4:
        problems.append(
            f"the file holds a 4D series of {shape[3]} volumes; only the first volume was analysed"
        )
    attributes = _describe(image)
    if modality is None:
        modality = guess_modality(pixels)
        attributes["ModalityGuess"] = f"{modality} (NIfTI records no modality; guessed from values)"
    return ImageVolume(
        input=input_label,
        kind="nifti",
        modality=modality,
        pixels=pixels,
        spacing=_spacing(image),
        slices=tuple(SliceRef(source_file=path, frame=k) for k in range(pixels.shape[0])),
        bits_stored=int(image.get_data_dtype().itemsize * 8) // channels,
        channels=channels,
        attributes=attributes,
        problems=problems,
    )


def _load(path: Path, open_files: ExitStack) -> AnalyzeImage:
    """Parse the header; voxel data stays on disk until ``_read_first_volume``."""
    try:
        if path.name.lower().endswith(_NIBABEL_SUFFIXES):
            image = nib.load(path, mmap=False)
        else:
            image = _load_stream(path, open_files)
    except FileNotFoundError as exc:
        raise ReadError(
            path, f"a file of the image is missing ({exc.filename}); keep .hdr and .img together"
        ) from exc
    except ImageFileError as exc:
        raise ReadError(
            path,
            "nibabel does not recognise it as NIfTI or Analyze: the header is damaged or "
            "truncated. Copy or export the file again",
        ) from exc
    except _READ_ERRORS as exc:
        raise ReadError(
            path,
            f"the NIfTI header cannot be read ({type(exc).__name__}: {exc}); the file is "
            "damaged or truncated. Copy or export it again",
        ) from exc
    if not isinstance(image, AnalyzeImage):
        raise ReadError(
            path,
            f"nibabel reads it as {type(image).__name__}, not NIfTI or Analyze; "
            "convert it to NIfTI first",
        )
    return image


def _load_stream(path: Path, open_files: ExitStack) -> AnalyzeImage:
    """Read a single-file NIfTI whose name nibabel would not recognise (e.g. no extension)."""
    stream: io.BufferedIOBase = open_files.enter_context(path.open("rb"))
    if stream.read(2) == b"\x1f\x8b":
        stream.seek(0)
        stream = open_files.enter_context(gzip.GzipFile(fileobj=stream, mode="rb"))
    stream.seek(0)
    sizeof_hdr = stream.read(4)
    stream.seek(0)
    is_nifti2 = 540 in (int.from_bytes(sizeof_hdr, "little"), int.from_bytes(sizeof_hdr, "big"))
    image_class = nib.Nifti2Image if is_nifti2 else nib.Nifti1Image
    return image_class.from_stream(stream)


def _spatial_shape(path: Path, image: AnalyzeImage) -> tuple[int, ...]:
    """The declared shape without trailing length-1 dimensions beyond the third."""
    shape = tuple(int(size) for size in image.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 4 or len(shape) < 2:
        raise ReadError(
            path,
            f"is a {len(shape)}D image (shape {shape}); only 2D, 3D and 4D NIfTI can be read. "
            "Split it into 3D volumes first",
        )
    if min(shape) < 1:
        raise ReadError(path, f"declares an empty image (shape {shape}); there is nothing to read")
    return shape


def _check_size(path: Path, image: AnalyzeImage, shape: tuple[int, ...]) -> None:
    """Refuse complex voxels, and headers declaring more than ``MAX_BYTES``, before reading."""
    volume_shape = shape[:3]
    dtype = image.get_data_dtype()
    if dtype.kind == "c":
        raise ReadError(
            path,
            f"holds complex-valued voxels ({dtype}); save the magnitude image as NIfTI and "
            "analyse that",
        )
    voxels = math.prod(volume_shape)
    needed = voxels * max(dtype.itemsize, 4)
    if needed > MAX_BYTES:
        raise ReadError(
            path,
            f"declares an image of {'×'.join(str(size) for size in shape)} {dtype} voxels "
            f"({_size(needed)} to read), larger than the limit of {_size(MAX_BYTES)}; it was "
            "not read. If the image is genuine, raise medforensics.io.nifti.MAX_BYTES",
        )


def _read_first_volume(path: Path, image: AnalyzeImage, shape: tuple[int, ...]) -> np.ndarray:
    """The voxel data, scaled, as ``(x, y, z)``; RGB voxels become luminance."""
    proxy: Any = image.dataobj
    is_rgb = bool(image.get_data_dtype().names)
    try:
        if len(shape) == 4:
            # a slice of the proxy reads (and scales) that volume only
            data = np.asarray(proxy[(slice(None),) * 3 + (0,) + (0,) * (len(image.shape) - 4)])
        elif is_rgb:
            data = np.asarray(proxy)
        else:
            # ArrayProxy applies scl_slope and scl_inter itself, in the requested dtype
            data = np.asarray(proxy, dtype=np.float32)
    except _READ_ERRORS as exc:
        raise ReadError(
            path,
            f"the voxel data is truncated or corrupt ({type(exc).__name__}: {exc}); "
            "copy or export the file again",
        ) from exc
    if is_rgb:
        data = _luminance(data)
    data = data.astype(np.float32, copy=False)
    return data.reshape(shape[:3] if len(shape) >= 3 else (*shape, 1))


def _luminance(rgb_voxels: np.ndarray) -> np.ndarray:
    red, green, blue = (rgb_voxels[channel].astype(np.float32) for channel in ("R", "G", "B"))
    if np.array_equal(red, green) and np.array_equal(red, blue):
        return red
    return red * _BT601[0] + green * _BT601[1] + blue * _BT601[2]


def _datatype_name(dtype: np.dtype) -> str:
    if dtype.names:
        return {3: "rgb24", 4: "rgba32"}.get(len(dtype.names), str(dtype))
    return str(dtype)


def _spacing(image: AnalyzeImage) -> tuple[float, float, float]:
    """``(slice, row, col)`` spacing in mm; NaN where the header gives none."""
    zooms = [float(zoom) for zoom in image.header.get_zooms()[:3]]
    scale = _UNIT_TO_MM.get(_spatial_unit(image), 1.0)
    millimetres = [zoom * scale if math.isfinite(zoom) and zoom > 0 else math.nan for zoom in zooms]
    while len(millimetres) < 3:
        millimetres.append(math.nan)
    return (millimetres[2], millimetres[0], millimetres[1])


def _spatial_unit(image: AnalyzeImage) -> str:
    get_units = getattr(image.header, "get_xyzt_units", None)
    return str(get_units()[0]) if get_units is not None else "unknown"


def _describe(image: AnalyzeImage) -> dict[str, str]:
    header = image.header
    attributes = {
        "format": type(image).__name__.removesuffix("Image"),
        "datatype": _datatype_name(image.get_data_dtype()),
        "shape": "x".join(str(size) for size in image.shape),
    }
    unit = _spatial_unit(image)
    attributes["xyz_units"] = unit if unit in _UNIT_TO_MM else f"{unit} (assumed mm)"
    if image.get_data_dtype().names:
        attributes["colour"] = "RGB voxels reduced to BT.601 luminance"
    for code in ("qform_code", "sform_code"):
        if code in header:
            attributes[code] = str(int(header[code]))
    if "descrip" in header:
        descrip = bytes(header["descrip"]).split(b"\x00", 1)[0].decode("latin-1").strip()
        if descrip:
            attributes["descrip"] = descrip
    # nibabel moves scl_slope/scl_inter from the header into the array proxy on load
    slope = float(getattr(image.dataobj, "slope", 1.0))
    inter = float(getattr(image.dataobj, "inter", 0.0))
    if slope != 1.0 or inter != 0.0:
        attributes["scl_slope"] = f"{slope:g}"
        attributes["scl_inter"] = f"{inter:g}"
    return attributes
