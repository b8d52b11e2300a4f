"""``full_map``: detector maps brought to image resolution, or drawn from findings."""

from __future__ import annotations

import numpy as np
import pytest

from medforensics.detect.types import Detection, Finding
from medforensics.explain.maps import (
    full_map,
    heat_baseline,
    peak,
    shown_heat,
    slice_order,
    upsample,
)


def _detection(cells: np.ndarray | None, stride: int = 1, findings: list[Finding] | None = None):
    return Detection(
        "test", 0.5, "inconclusive", findings=findings or [], anomaly_map=cells, map_stride=stride
    )


def test_stride_map_is_upsampled_to_the_image_shape_and_keeps_cell_values_at_centres() -> None:
    cells = np.random.default_rng(0).uniform(0, 1, size=(3, 4, 5)).astype(np.float32)
    heat = full_map(_detection(cells, stride=8), (3, 32, 40))
    assert heat.shape == (3, 32, 40) and heat.dtype == np.float32
    # the centre of cell (i, j) lies between pixels 8i+3 and 8i+4: their mean is the cell value
    for z, i, j in [(0, 0, 0), (1, 2, 3), (2, 3, 4), (1, 1, 2)]:
        block = heat[z, 8 * i + 3 : 8 * i + 5, 8 * j + 3 : 8 * j + 5]
        assert block.mean() == pytest.approx(cells[z, i, j], abs=0.08)
    # bilinear: every pixel lies between the smallest and largest cell of its slice
    assert heat.min() >= cells.min() - 1e-6 and heat.max() <= cells.max() + 1e-6


def test_a_constant_map_gives_a_constant_image_where_cells_cover_it() -> None:
    cells = np.full((2, 4, 3), 0.7, dtype=np.float32)
    heat = full_map(_detection(cells, stride=8), (2, 35, 20))
    assert heat.shape == (2, 35, 20)
    np.testing.assert_allclose(heat[:, :32, :20], 0.7, atol=1e-6)
    # rows 32..34 are not covered by any cell (the detector dropped the remainder): zero
    assert not heat[:, 32:, :].any()


def test_one_hot_cell_peaks_inside_its_own_pixels() -> None:
    cells = np.zeros((4, 6, 6), dtype=np.float32)
    cells[2, 4, 1] = 0.9
    heat = full_map(_detection(cells, stride=16), (4, 96, 96))
    z, row, col = peak(heat)
    assert z == 2 and 64 <= row < 80 and 16 <= col < 32
    assert heat[z, row, col] == pytest.approx(0.9, abs=0.15)


def test_stride_one_is_exact_and_slices_are_padded_or_cropped() -> None:
    cells = np.random.default_rng(1).uniform(0, 1, size=(2, 10, 12)).astype(np.float32)
    padded = full_map(_detection(cells), (4, 10, 12))
    np.testing.assert_array_equal(padded[:2], cells)
    assert not padded[2:].any()
    cropped = full_map(_detection(cells), (1, 8, 9))
    np.testing.assert_array_equal(cropped[0], cells[0, :8, :9])


def test_values_are_clipped_to_unit_range_and_nan_becomes_zero() -> None:
    cells = np.array([[[1.7, np.nan], [-0.5, 0.5]]], dtype=np.float32)
    heat = full_map(_detection(cells), (1, 2, 2))
    np.testing.assert_allclose(heat, [[[1.0, 0.0], [0.0, 0.5]]])


def test_without_a_map_findings_become_discs_of_their_radius_and_score() -> None:
    findings = [
        Finding("local", 0.8, 1, 20, 30, radius=5.0),
        Finding("local", 0.4, 1, 22, 30, radius=10.0),  # overlaps: the larger score wins
        Finding("global", 0.9, 0, 16, 16, radius=0.0),  # no extent: not drawn
        Finding("local", 0.7, 9, 5, 5, radius=3.0),  # slice outside the volume: ignored
    ]
    heat = full_map(_detection(None, findings=findings), (3, 40, 48))
    assert heat[1, 20, 30] == pytest.approx(0.8)
    assert heat[1, 20, 35] == pytest.approx(0.8)  # on the small disc's edge
    assert heat[1, 20, 37] == pytest.approx(0.4)  # only the large disc
    assert heat[1, 22, 41] == pytest.approx(0.0)  # outside both
    assert not heat[0].any() and not heat[2].any()
    assert peak(heat) == (1, 15, 30)  # first pixel of the 0.8 disc in C order


def test_neither_map_nor_spatial_findings_gives_zeros() -> None:
    heat = full_map(_detection(None), (2, 16, 16))
    assert heat.shape == (2, 16, 16) and not heat.any()
    assert peak(heat) is None


def test_upsample_handles_maps_larger_than_the_image() -> None:
    cells = np.ones((1, 10, 10), dtype=np.float32)
    assert upsample(cells, 4, 12, 8).shape == (1, 12, 8)


def test_display_scale_is_the_excess_over_the_typical_region() -> None:
    heat = np.full((1, 10, 10), 0.4, dtype=np.float32)
    heat[0, 2, 3] = 0.85
    baseline = heat_baseline(heat, dense=True)
    assert baseline == pytest.approx(0.4)
    shown = shown_heat(heat, baseline)
    assert shown[0, 2, 3] == pytest.approx(0.75)  # (0.85 - 0.4) / 0.6
    assert np.count_nonzero(shown) == 1
    # a map drawn from findings is shown as it is
    assert heat_baseline(heat, dense=False) == 0.0


def test_slice_order_puts_the_hottest_slice_first() -> None:
    heat = np.zeros((4, 3, 3), dtype=np.float32)
    heat[2, 1, 1], heat[0, 0, 0] = 0.9, 0.3
    assert slice_order(heat)[:2] == [2, 0]
