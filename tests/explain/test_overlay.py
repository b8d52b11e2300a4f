"""Overlays, windows and the pictures built from them."""

from __future__ import annotations

import numpy as np
import pytest

from medforensics.explain.overlay import RING_RGB, draw_ring, hottest_pixel, overlay_rgb
from medforensics.explain.render import crop_box, finding_crop, png_bytes, strip_indices
from medforensics.explain.window import (
    LUNG_WINDOW,
    SOFT_TISSUE_WINDOW,
    display_window,
    to_uint8,
)
from medforensics.io.types import ImageVolume


def _gray(shape: tuple[int, int] = (20, 30), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape).astype(np.uint8)


def test_below_the_floor_the_gray_is_unchanged_and_above_it_colour_is_drawn() -> None:
    gray = _gray()
    heat = np.zeros(gray.shape, dtype=np.float32)
    heat[5:10, 5:10] = 0.6
    heat[0, :] = 0.19  # just below the floor
    rgb = overlay_rgb(gray, heat, alpha=0.5, floor=0.2)
    assert rgb.shape == (*gray.shape, 3) and rgb.dtype == np.uint8
    outside = heat < 0.2
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel][outside], gray[outside])
    inside = rgb[5:10, 5:10].astype(int)
    g = gray[5:10, 5:10].astype(float)
    t = (0.6 - 0.2) / 0.8
    np.testing.assert_allclose(inside[..., 0], np.rint(0.5 * g + 0.5 * 255), atol=1)
    np.testing.assert_allclose(inside[..., 1], np.rint(0.5 * g + 0.5 * 255 * (1 - t)), atol=1)
    np.testing.assert_allclose(inside[..., 2], np.rint(0.5 * g), atol=1)


def test_full_heat_is_red_blended_with_the_gray() -> None:
    gray = np.full((4, 4), 100, dtype=np.uint8)
    rgb = overlay_rgb(gray, np.ones((4, 4), dtype=np.float32), alpha=0.45)
    np.testing.assert_array_equal(rgb[0, 0], [round(0.55 * 100 + 0.45 * 255), 55, 55])


def test_hottest_pixel_is_found_from_colours_whatever_the_gray() -> None:
    gray = _gray((40, 40), seed=3)
    heat = np.zeros((40, 40), dtype=np.float32)
    heat[10:30, 10:30] = 0.5
    heat[22, 17] = 1.0
    rgb = overlay_rgb(gray, heat)
    draw_ring(rgb, 20, 20, 8)  # cyan rings must not count as heat
    assert hottest_pixel(rgb) == (22, 17)
    assert hottest_pixel(overlay_rgb(gray, np.zeros((40, 40), dtype=np.float32))) is None


def test_overlay_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        overlay_rgb(_gray((10, 10)), np.zeros((10, 11), dtype=np.float32))


def test_ring_is_drawn_at_its_radius() -> None:
    rgb = np.zeros((41, 41, 3), dtype=np.uint8)
    draw_ring(rgb, 20, 20, 10)
    assert tuple(rgb[20, 30]) == RING_RGB and tuple(rgb[10, 20]) == RING_RGB
    assert tuple(rgb[20, 20]) == (0, 0, 0)


def _volume(pixels: np.ndarray, modality: str) -> ImageVolume:
    return ImageVolume(input="x", kind="image", modality=modality, pixels=pixels)


def test_ct_windows_follow_the_anatomy_and_others_use_percentiles() -> None:
    lungs = np.full((2, 32, 32), 40.0, dtype=np.float32)
    lungs[:, 8:24, 4:14] = -850.0
    assert display_window(_volume(lungs, "CT")) == LUNG_WINDOW
    soft = np.full((2, 32, 32), 40.0, dtype=np.float32)
    assert display_window(_volume(soft, "CT")) == SOFT_TISSUE_WINDOW
    ramp = np.arange(1000, dtype=np.float32).reshape(1, 10, 100)
    centre, width = display_window(_volume(ramp, "MR"))
    assert centre == pytest.approx(499.5, abs=1) and width == pytest.approx(979.02, abs=0.01)


def test_to_uint8_maps_the_window_edges_to_black_and_white() -> None:
    image = np.array([[-2000.0, -600.0 - 750.0, -600.0, 150.0, 3000.0]], dtype=np.float32)
    out = to_uint8(image, *LUNG_WINDOW)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert out.tolist() == [[0, 0, 128, 255, 255]]


def test_strip_takes_the_hottest_slices_and_spreads_the_rest() -> None:
    peaks = [0.0] * 40
    peaks[33], peaks[7] = 0.9, 0.8
    chosen = strip_indices(peaks, count=8)
    assert len(chosen) == 8 and chosen == sorted(set(chosen))
    assert 33 in chosen and 7 in chosen
    assert chosen[0] < 8 and chosen[-1] > 30  # spread over the volume
    assert strip_indices([0.1, 0.2, 0.3], count=8) == [0, 1, 2]


def test_crop_stays_inside_the_image_and_rings_the_finding() -> None:
    assert crop_box((64, 48), 2, 46, 4.0) == (0, 48, 0, 48)
    r0, r1, c0, c1 = crop_box((512, 512), 300, 200, 40.0)
    assert (r1 - r0, c1 - c0) == (120, 120) and r0 <= 300 < r1 and c0 <= 200 < c1
    overlay = np.zeros((64, 64, 3), dtype=np.uint8)
    crop = finding_crop(overlay, 32, 32, 6.0)
    assert crop.shape[0] == crop.shape[1] >= 48
    assert (crop == RING_RGB).all(axis=2).any()


def test_png_bytes_are_a_png() -> None:
    data = png_bytes(np.zeros((4, 5, 3), dtype=np.uint8))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(np.zeros((4, 5), dtype=np.float32))
