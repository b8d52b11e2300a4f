"""Read PNG, JPEG and TIFF images into ``ImageVolume`` objects without altering stored values.

Pillow decodes the files. Gray images keep their stored values; colour images are reduced to
luminance (ITU-R BT.601 weights) at their original bit depth. The EXIF orientation is recorded,
never applied, because a forensic reader must not move pixels. Declared sizes are checked
against ``MAX_PIXELS`` before anything is decoded.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, JpegImagePlugin, PngImagePlugin, TiffImagePlugin

from medforensics.io.sniff import sniff_format
from medforensics.io.types import ImageVolume, ReadError, SliceRef

#: Largest image, in pixels summed over all pages, that is decoded; a file declaring more is
#: refused before decoding (decompression-bomb guard). Pillow's own guard still refuses a single
#: TIFF page above ``2 * PIL.Image.MAX_IMAGE_PIXELS`` when it is decoded.
MAX_PIXELS = 2**28

_PLUGINS: dict[str, type[ImageFile.ImageFile]] = {
    "png": PngImagePlugin.PngImageFile,
    "jpeg": JpegImagePlugin.JpegImageFile,
    "tiff": TiffImagePlugin.TiffImageFile,
}
# Pillow raises any of these on damaged files; the try blocks around it are kept small so that
# none of them hides a bug in this module.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)
_BT601 = (0.299, 0.587, 0.114)
_GRAY_MODES = {"1", "L", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
_MODE_BITS = {"1": 1, "I": 32, "F": 32, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16}
_EXIF_ORIENTATION = 0x0112
_TIFF_BITS_PER_SAMPLE = 258
# IJG (libjpeg) example luminance quantisation table, the base that quality scales
_IJG_LUMINANCE_SUM = 3688


def read_raster(path: Path, input_label: str, modality: str = "OT") -> ImageVolume:
    """Read a PNG, JPEG or (multi-page) TIFF image.

    Args:
        path: the image file.
        input_label: the path as the user gave it, stored in ``ImageVolume.input``.
        modality: DICOM modality code to record; images carry none themselves.

    Returns:
        One slice per TIFF page (one slice for PNG and JPEG), stored values as float32.

    Raises:
        ReadError: if the file is not PNG, JPEG or TIFF, is damaged, declares more than
            ``MAX_PIXELS`` pixels, or is a TIFF whose pages differ in size.
    """
    path = Path(path)
    image = _open(path)
    try:
        page_count = _page_count(path, image)
        _check_declared_size(path, image, page_count)
        attributes, problems = _describe(image)
        png_ihdr = _png_ihdr(path) if image.format == "PNG" else None
        slice_pixels: list[np.ndarray] = []
        channels, bits_stored = 1, 0
        deep_colour_pages: list[np.ndarray] | None = None
        for page in range(page_count):
            _seek(path, image, page)
            if _is_deep_colour(image, png_ihdr):
                if deep_colour_pages is None:
                    deep_colour_pages = _decode_deep_colour(path, image.format, page_count)
                    if not deep_colour_pages:
                        problems.append(
                            "the image has 16 bits per colour channel but OpenCV could not "
                            "decode it; Pillow kept only the upper 8 bits of each channel"
                        )
                if deep_colour_pages:
                    pixels, page_channels = _luminance_bgr(deep_colour_pages[page])
                    slice_pixels.append(pixels)
                    channels, bits_stored = max(channels, page_channels), 16
                    continue
            pixels, page_channels, page_bits = _decode_page(path, image, page, png_ihdr)
            slice_pixels.append(pixels)
            channels, bits_stored = max(channels, page_channels), max(bits_stored, page_bits)
        _seek(path, image, 0)
        _record_exif_orientation(image, attributes, problems)
    finally:
        image.close()

    return ImageVolume(
        input=input_label,
        kind="image",
        modality=modality,
        pixels=np.stack(slice_pixels).astype(np.float32, copy=False),
        spacing=_spacing_from_dpi(attributes),
        slices=tuple(
            SliceRef(source_file=path, frame=page if page_count > 1 else None)
            for page in range(page_count)
        ),
        bits_stored=bits_stored,
        channels=channels,
        attributes=attributes,
        problems=problems,
    )


def _open(path: Path) -> ImageFile.ImageFile:
    """Open ``path`` lazily with the Pillow plugin for its format (decodes nothing yet)."""
    try:
        file_format = sniff_format(path)
    except OSError as exc:
        raise ReadError(path, f"the file cannot be opened ({exc}); check that it exists") from exc
    plugin = _PLUGINS.get(file_format)
    if plugin is None:
        raise ReadError(
            path,
            f"not a PNG, JPEG or TIFF image (its content looks like: {file_format}); "
            "convert it, or pass it to the reader for its format",
        )
    # The plugin class is used directly, not Image.open, so that only these three decoders can
    # ever run and so that MAX_PIXELS, not Pillow's lower default guard, decides what is refused.
    try:
        return plugin(path)
    except _DECODE_ERRORS as exc:
        raise ReadError(
            path,
            f"the {file_format.upper()} file cannot be decoded ({exc}); it is damaged, "
            "truncated or a variant Pillow does not support. Copy or export it again",
        ) from exc


def _seek(path: Path, image: Image.Image, page: int) -> None:
    if page == 0 and image.tell() == 0:
        return
    try:
        image.seek(page)
    except _DECODE_ERRORS as exc:
        raise ReadError(
            path, f"page {page} (counting from 0) cannot be read ({exc}); the file is damaged"
        ) from exc


def _page_count(path: Path, image: Image.Image) -> int:
    if image.format != "TIFF":
        return 1
    try:
        return int(getattr(image, "n_frames", 1))
    except _DECODE_ERRORS as exc:
        raise ReadError(
            path, f"the list of TIFF pages is damaged ({exc}); copy or export the file again"
        ) from exc


def _check_declared_size(path: Path, image: Image.Image, page_count: int) -> None:
    """Refuse images larger than ``MAX_PIXELS`` or with pages of differing size, from headers."""
    width, height = image.size
    total = width * height * page_count
    if total > MAX_PIXELS:
        declared = (
            f"{page_count} pages of {width}×{height} pixels"
            if page_count > 1
            else f"a {width}×{height} image"
        )
        raise ReadError(
            path,
            f"declares {declared} ({total:,} pixels), larger than the limit of {MAX_PIXELS:,} "
            "pixels; it was not decoded because it may be a decompression bomb. If the image "
            "is genuine, raise medforensics.io.raster.MAX_PIXELS",
        )
    for page in range(1, page_count):
        _seek(path, image, page)
        if image.size != (width, height):
            page_width, page_height = image.size
            raise ReadError(
                path,
                f"TIFF page {page} (counting from 0) is {page_width}×{page_height} pixels but "
                f"page 0 is {width}×{height}; a multi-page TIFF is read as one volume, so all "
                "pages must share one size. Split the pages into separate files",
            )
    _seek(path, image, 0)


def _describe(image: Image.Image) -> tuple[dict[str, str], list[str]]:
    """Header values worth keeping: format, mode, DPI, JPEG quality."""
    attributes = {"format": str(image.format), "pil_mode": image.mode}
    problems: list[str] = []
    dpi = _valid_dpi(image.info.get("dpi")) if image.format in ("PNG", "TIFF") else None
    if dpi is not None:
        attributes["dpi"] = f"{dpi[0]:g} x {dpi[1]:g}"
    quantization = getattr(image, "quantization", None)
    if image.format == "JPEG" and quantization:
        quality = _jpeg_quality_estimate(quantization)
        if quality is not None:
            attributes["jpeg_quality_estimate"] = str(quality)
    frames = getattr(image, "n_frames", 1)
    if image.format != "TIFF" and isinstance(frames, int) and frames > 1:
        problems.append(f"the file holds {frames} frames (animation); only the first was read")
    return attributes, problems


def _record_exif_orientation(
    image: Image.Image, attributes: dict[str, str], problems: list[str]
) -> None:
    """Record (never apply) the EXIF orientation; PNG may keep EXIF after the pixel data."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except _DECODE_ERRORS as exc:
        problems.append(f"the EXIF block cannot be read ({exc}); orientation unknown")
        return
    if orientation is not None:
        attributes["exif_orientation"] = str(orientation)


def _valid_dpi(dpi: object) -> tuple[float, float] | None:
    """``(x, y)`` DPI when both are plausible; writers put 1 (or 0) where they mean unknown."""
    if not isinstance(dpi, tuple) or len(dpi) != 2:
        return None
    try:
        x_dpi, y_dpi = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError):
        return None
    if all(math.isfinite(value) and value > 1.0 for value in (x_dpi, y_dpi)):
        return x_dpi, y_dpi
    return None


def _spacing_from_dpi(attributes: dict[str, str]) -> tuple[float, float, float]:
    if "dpi" not in attributes:
        return (math.nan, math.nan, math.nan)
    x_dpi, y_dpi = (float(value) for value in attributes["dpi"].split(" x "))
    return (math.nan, 25.4 / y_dpi, 25.4 / x_dpi)


def _jpeg_quality_estimate(tables: dict[int, object]) -> int | None:
    """IJG quality (1-100) that would give the luminance table; rough for non-IJG encoders.

    The IJG encoder scales its example table by ``S = 5000 / Q`` (``Q < 50``) or ``200 - 2Q``,
    so the ratio of table sums recovers ``S`` and hence ``Q``, whatever the coefficient order.
    """
    luminance = tables.get(0)
    if luminance is None:
        return None
    values = [int(value) for value in luminance]  # type: ignore[attr-defined]
    if len(values) != 64:
        return None
    scale = 100.0 * sum(values) / _IJG_LUMINANCE_SUM
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return int(min(100, max(1, round(quality))))


def _decode_page(
    path: Path, image: Image.Image, page: int, png_ihdr: tuple[int, int] | None
) -> tuple[np.ndarray, int, int]:
    """Decode the current page: ``(pixels (rows, cols), channels, bits stored)``."""
    mode = image.mode
    channels = len(image.getbands())
    bits = _bits_stored(image, png_ihdr)
    try:
        if image.format == "JPEG" and mode == "RGB":
            # The decoder's own Y channel is the stored luminance (JFIF uses BT.601), exact
            # where recomputing it from decoded RGB would add rounding.
            image.draft("L", None)
            return np.asarray(image, dtype=np.float32), 3, bits
        if mode in _GRAY_MODES:
            pixels = np.asarray(image).astype(np.float32)
            return _undo_png_low_bit_scaling(image, pixels, bits), 1, bits
        if mode == "LA":
            return np.asarray(image)[..., 0].astype(np.float32), 2, bits
        if mode in ("P", "PA"):
            converted = image.convert("RGBA" if mode == "PA" else "RGB")
            return _luminance_rgb(np.asarray(converted)), len(converted.getbands()), 8
        rgb = np.asarray(image if mode in ("RGB", "RGBA") else image.convert("RGB"))
        return _luminance_rgb(rgb), channels, bits
    except Image.DecompressionBombError as exc:
        # only reachable when MAX_PIXELS was raised above Pillow's own guard (TIFF pages)
        raise ReadError(
            path,
            f"Pillow refused to decode page {page} ({exc}); if the image is genuine, raise "
            "PIL.Image.MAX_IMAGE_PIXELS as well as medforensics.io.raster.MAX_PIXELS",
        ) from exc
    except _DECODE_ERRORS as exc:
        where = f" page {page} (counting from 0)" if page else ""
        raise ReadError(
            path,
            f"the {image.format} image data{where} is truncated or corrupt ({exc}); "
            "copy or export the file again",
        ) from exc


def _bits_stored(image: Image.Image, png_ihdr: tuple[int, int] | None) -> int:
    if png_ihdr is not None and image.mode not in ("P", "PA"):
        return png_ihdr[0]
    if image.format == "TIFF" and image.mode not in ("P", "PA"):
        bits = _tiff_bits_per_sample(image)
        if bits:
            return bits
    if image.format == "JPEG":
        return int(getattr(image, "bits", 8) or 8)
    return _MODE_BITS.get(image.mode, 8)


def _png_ihdr(path: Path) -> tuple[int, int] | None:
    """``(bit depth, colour type)`` from the IHDR chunk, which Pillow does not expose."""
    with path.open("rb") as handle:
        header = handle.read(26)
    return (header[24], header[25]) if len(header) == 26 else None


def _tiff_bits_per_sample(image: Image.Image) -> int | None:
    bits = image.tag_v2.get(_TIFF_BITS_PER_SAMPLE)  # type: ignore[attr-defined]
    if isinstance(bits, tuple):
        return max((int(value) for value in bits), default=None)
    return int(bits) if bits is not None else None


def _undo_png_low_bit_scaling(image: Image.Image, pixels: np.ndarray, bits: int) -> np.ndarray:
    """Pillow stretches 2- and 4-bit gray PNG to 0..255; divide back to the stored values."""
    if image.format == "PNG" and image.mode == "L" and bits in (2, 4):
        return pixels / np.float32(255 // (2**bits - 1))
    return pixels


def _is_deep_colour(image: Image.Image, png_ihdr: tuple[int, int] | None) -> bool:
    """Colour with more than 8 bits per channel, which Pillow reduces to 8 bits."""
    if image.mode in _GRAY_MODES or image.mode in ("P", "PA"):
        return False
    if png_ihdr is not None:
        bit_depth, colour_type = png_ihdr
        return colour_type in (2, 4, 6) and bit_depth == 16
    if image.format == "TIFF":
        return (_tiff_bits_per_sample(image) or 8) > 8
    return False


def _decode_deep_colour(path: Path, file_format: str | None, page_count: int) -> list[np.ndarray]:
    """All pages at full depth with OpenCV, or ``[]`` if OpenCV cannot decode them."""
    try:
        import cv2
    except ImportError:
        return []
    encoded = np.fromfile(path, dtype=np.uint8)
    flags = cv2.IMREAD_UNCHANGED  # also leaves EXIF orientation unapplied
    if file_format == "TIFF":
        ok, pages = cv2.imdecodemulti(encoded, flags)
        pages = list(pages) if ok else []
    else:
        decoded = cv2.imdecode(encoded, flags)
        pages = [decoded] if decoded is not None else []
    if len(pages) != page_count or any(page.dtype != np.uint16 for page in pages):
        return []
    return pages


def _luminance_bgr(page: np.ndarray) -> tuple[np.ndarray, int]:
    """Luminance of an OpenCV page (gray, BGR or BGRA) and its channel count."""
    if page.ndim == 2:
        return page.astype(np.float32), 1
    channels = page.shape[2]
    if channels < 3:
        return page[..., 0].astype(np.float32), channels
    return _luminance_rgb(page[..., 2::-1]), channels


def _luminance_rgb(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luminance of ``(rows, cols, 3 or 4)``; alpha is ignored.

    Pixels whose three channels are equal keep their value exactly, so gray images saved as
    RGB read back bit for bit.
    """
    red, green, blue = (rgb[..., index] for index in range(3))
    if np.array_equal(red, green) and np.array_equal(red, blue):
        return red.astype(np.float32)
    luminance = red.astype(np.float32) * np.float32(_BT601[0])
    luminance += green.astype(np.float32) * np.float32(_BT601[1])
    luminance += blue.astype(np.float32) * np.float32(_BT601[2])
    return luminance
