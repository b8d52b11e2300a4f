"""PNG, JPEG and TIFF reading: stored values, luminance, pages, size guards, damaged files."""

from __future__ import annotations

import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medforensics.io import raster
from medforensics.io.raster import read_raster
from medforensics.io.types import ReadError

BT601 = np.array([0.299, 0.587, 0.114])


def _save(tmp_path: Path, name: str, image: Image.Image, **options: object) -> Path:
    path = tmp_path / name
    image.save(path, **options)
    return path


def _gradient(rows: int = 24, cols: int = 32) -> np.ndarray:
    """A smooth 8-bit image that survives JPEG compression almost unchanged."""
    yy, xx = np.mgrid[:rows, :cols]
    return (40 + 4 * yy + 3 * xx).astype(np.uint8)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float64) @ BT601


def test_gray_8bit_png_keeps_exact_values(tmp_path: Path) -> None:
    values = np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8)
    path = _save(tmp_path, "gray.png", Image.fromarray(values))

    volume = read_raster(path, "gray.png")

    assert volume.kind == "image"
    assert volume.modality == "OT"
    assert volume.input == "gray.png"
    assert volume.pixels.dtype == np.float32
    assert volume.shape == (1, 20, 30)
    np.testing.assert_array_equal(volume.pixels[0], values)
    assert (volume.bits_stored, volume.channels) == (8, 1)
    assert volume.slices[0].source_file == path
    assert volume.slices[0].frame is None
    assert all(math.isnan(spacing) for spacing in volume.spacing)
    assert volume.attributes["format"] == "PNG"
    assert volume.problems == []


def test_gray_16bit_png_keeps_exact_values(tmp_path: Path) -> None:
    values = np.random.default_rng(1).integers(0, 65536, (16, 12), dtype=np.uint16)
    values[0, 0], values[0, 1] = 0, 65535
    path = _save(tmp_path, "gray16.png", Image.fromarray(values))

    volume = read_raster(path, "gray16.png", modality="DX")

    np.testing.assert_array_equal(volume.pixels[0], values)
    assert volume.bits_stored == 16
    assert volume.modality == "DX"
    assert float(volume.pixels.max()) == 65535.0  # not rescaled to 0..1 or 0..255


def test_low_bit_gray_png_is_not_stretched(tmp_path: Path) -> None:
    values = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    path = _save(tmp_path, "gray2.png", Image.fromarray(values), bits=2)

    volume = read_raster(path, "gray2.png")

    np.testing.assert_array_equal(volume.pixels[0], values)
    assert volume.bits_stored == 2


def test_rgb_png_becomes_bt601_luminance(tmp_path: Path) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (10, 14, 3), dtype=np.uint8)
    path = _save(tmp_path, "rgb.png", Image.fromarray(rgb))

    volume = read_raster(path, "rgb.png")

    np.testing.assert_allclose(volume.pixels[0], _luminance(rgb), atol=1e-3)
    assert (volume.channels, volume.bits_stored) == (3, 8)


def test_gray_saved_as_rgb_reads_back_bit_for_bit(tmp_path: Path) -> None:
    gray = np.random.default_rng(3).integers(0, 256, (9, 9), dtype=np.uint8)
    path = _save(tmp_path, "gray_rgb.png", Image.fromarray(np.stack([gray] * 3, axis=-1)))

    volume = read_raster(path, "gray_rgb.png")

    np.testing.assert_array_equal(volume.pixels[0], gray)
    assert volume.channels == 3


def test_rgba_png_ignores_alpha(tmp_path: Path) -> None:
    rgba = np.random.default_rng(4).integers(0, 256, (8, 6, 4), dtype=np.uint8)
    path = _save(tmp_path, "rgba.png", Image.fromarray(rgba, mode="RGBA"))

    volume = read_raster(path, "rgba.png")

    np.testing.assert_allclose(volume.pixels[0], _luminance(rgba), atol=1e-3)
    assert volume.channels == 4


def test_palette_png_uses_palette_colours(tmp_path: Path) -> None:
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [10, 20, 200]], dtype=np.uint8)
    indices = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette(palette.flatten().tolist())
    path = _save(tmp_path, "palette.png", image)

    volume = read_raster(path, "palette.png")

    np.testing.assert_allclose(volume.pixels[0], _luminance(palette[indices]), atol=1e-3)
    assert (volume.channels, volume.bits_stored) == (3, 8)
    assert volume.attributes["pil_mode"] == "P"


def test_gray_jpeg_is_close_and_quality_is_estimated(tmp_path: Path) -> None:
    gray = _gradient()
    path = _save(tmp_path, "gray.jpg", Image.fromarray(gray), quality=90)

    volume = read_raster(path, "gray.jpg")

    assert volume.attributes["format"] == "JPEG"
    assert np.abs(volume.pixels[0] - gray).max() <= 3
    assert abs(int(volume.attributes["jpeg_quality_estimate"]) - 90) <= 2
    assert (volume.channels, volume.bits_stored) == (1, 8)


def test_colour_jpeg_reads_the_stored_luminance(tmp_path: Path) -> None:
    base = _gradient().astype(np.float64)
    rgb = np.stack([base, base * 0.5 + 60, 255 - base], axis=-1).astype(np.uint8)
    path = _save(tmp_path, "rgb.jpg", Image.fromarray(rgb), quality=95)

    volume = read_raster(path, "rgb.jpg")

    assert volume.channels == 3
    assert np.abs(volume.pixels[0] - _luminance(rgb)).max() <= 3
    assert abs(int(volume.attributes["jpeg_quality_estimate"]) - 95) <= 2


def test_exif_orientation_is_recorded_not_applied(tmp_path: Path) -> None:
    image = Image.fromarray(_gradient(rows=10, cols=20))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = _save(tmp_path, "rotated.jpg", image, exif=exif.tobytes())

    volume = read_raster(path, "rotated.jpg")

    assert volume.attributes["exif_orientation"] == "6"
    assert volume.shape == (1, 10, 20)


def test_multipage_tiff_gives_one_slice_per_page(tmp_path: Path) -> None:
    pages = [np.full((5, 7), 10 * (page + 1), dtype=np.uint8) for page in range(3)]
    pages[1][2, 3] = 200
    images = [Image.fromarray(page) for page in pages]
    path = _save(tmp_path, "stack.tif", images[0], save_all=True, append_images=images[1:])

    volume = read_raster(path, "stack.tif")

    assert volume.shape == (3, 5, 7)
    np.testing.assert_array_equal(volume.pixels, np.stack(pages))
    assert [ref.frame for ref in volume.slices] == [0, 1, 2]
    assert all(ref.source_file == path for ref in volume.slices)
    assert volume.attributes["format"] == "TIFF"


def test_tiff_pages_of_different_sizes_are_refused(tmp_path: Path) -> None:
    images = [Image.fromarray(np.zeros((5, 7 + page), dtype=np.uint8)) for page in range(3)]
    path = _save(tmp_path, "mixed.tif", images[0], save_all=True, append_images=images[1:])

    with pytest.raises(ReadError) as caught:
        read_raster(path, "mixed.tif")

    assert caught.value.path == str(path)
    assert "page 1" in caught.value.message
    assert "8×5" in caught.value.message and "7×5" in caught.value.message


def test_16bit_tiff_keeps_exact_values(tmp_path: Path) -> None:
    values = np.random.default_rng(5).integers(0, 65536, (11, 13), dtype=np.uint16)
    path = _save(tmp_path, "gray16.tif", Image.fromarray(values))

    volume = read_raster(path, "gray16.tif")

    np.testing.assert_array_equal(volume.pixels[0], values)
    assert volume.bits_stored == 16


def test_16bit_colour_png_keeps_full_depth(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    rgb = np.random.default_rng(6).integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    ok, encoded = cv2.imencode(".png", rgb[..., ::-1])  # OpenCV writes BGR
    assert ok
    path = tmp_path / "rgb16.png"
    path.write_bytes(encoded.tobytes())

    volume = read_raster(path, "rgb16.png")

    np.testing.assert_allclose(volume.pixels[0], _luminance(rgb), rtol=1e-6, atol=0.02)
    assert (volume.bits_stored, volume.channels) == (16, 3)


def test_dpi_gives_pixel_spacing(tmp_path: Path) -> None:
    path = _save(tmp_path, "dpi.tif", Image.fromarray(_gradient()), dpi=(300, 150))

    volume = read_raster(path, "dpi.tif")

    assert math.isnan(volume.spacing[0])
    assert volume.spacing[1] == pytest.approx(25.4 / 150)  # rows follow the vertical DPI
    assert volume.spacing[2] == pytest.approx(25.4 / 300)


def test_truncated_png_is_a_read_error_naming_the_file(tmp_path: Path) -> None:
    values = np.random.default_rng(7).integers(0, 256, (64, 64), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])

    with pytest.raises(ReadError) as caught:
        read_raster(path, "cut.png")

    assert str(path) in str(caught.value)
    assert "truncated" in caught.value.message


def _png_declaring(tmp_path: Path, width: int, height: int) -> Path:
    """A valid 1×1 PNG whose IHDR is rewritten (CRC included) to declare another size."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((1, 1), dtype=np.uint8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path = tmp_path / "bomb.png"
    path.write_bytes(bytes(data))
    return path


def test_png_declaring_a_huge_size_is_refused_before_decoding(tmp_path: Path) -> None:
    path = _png_declaring(tmp_path, 100_000, 100_000)

    with pytest.raises(ReadError) as caught:
        read_raster(path, "bomb.png")

    message = caught.value.message
    assert caught.value.path == str(path)
    assert "100000×100000" in message
    assert f"{raster.MAX_PIXELS:,}" in message
    assert "not decoded" in message


def test_max_pixels_counts_every_tiff_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = [Image.fromarray(np.zeros((10, 10), dtype=np.uint8)) for _ in range(3)]
    path = _save(tmp_path, "stack.tif", images[0], save_all=True, append_images=images[1:])
    monkeypatch.setattr(raster, "MAX_PIXELS", 250)

    with pytest.raises(ReadError) as caught:
        read_raster(path, "stack.tif")

    assert "3 pages of 10×10 pixels" in caught.value.message
    assert "limit of 250 pixels" in caught.value.message


def test_pillow_guard_below_max_pixels_is_a_read_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = Image.fromarray(np.zeros((10, 10), dtype=np.uint8))
    # compressed, because Pillow memory-maps raw pages without its guard
    path = _save(tmp_path, "page.tif", page, compression="tiff_lzw")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)  # Pillow refuses above 2 × 20 pixels

    with pytest.raises(ReadError) as caught:
        read_raster(path, "page.tif")

    assert caught.value.path == str(path)
    assert "PIL.Image.MAX_IMAGE_PIXELS" in caught.value.message


def test_non_image_file_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not an image at all")

    with pytest.raises(ReadError) as caught:
        read_raster(path, "notes.png")

    assert caught.value.path == str(path)
    assert "not a PNG, JPEG or TIFF image" in caught.value.message
