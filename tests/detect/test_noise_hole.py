"""The ``noise-hole`` check: CT tissue without acquisition noise, alone and inside ``auto``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from medforensics.detect import create_detector
from medforensics.detect.auto import with_noise_hole
from medforensics.detect.noise_hole import (
    CLEAR_BELOW_PX,
    MIDDLE_PX,
    OPERATING_POINT,
    NoiseHoleDetector,
    probability,
    slice_hole,
)
from medforensics.detect.types import Detection
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom

SIZE = 256


def _volume(pixels: np.ndarray, **attributes: str) -> ImageVolume:
    return ImageVolume(
        input="phantom",
        kind="dicom-series",
        modality="CT",
        pixels=pixels.astype(np.float32),
        spacing=(2.5, 0.7, 0.7),
        attributes=dict(attributes),
    )


@pytest.fixture(scope="module")
def acquired() -> np.ndarray:
    """Integer HU, as read from a DICOM file."""
    return np.rint(chest_ct_phantom(2, SIZE, np.random.default_rng(21)))


def _disk(cy: int, cx: int, r: float) -> np.ndarray:
    yy, xx = np.ogrid[:SIZE, :SIZE]
    return np.asarray((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)


def _soft_tissue_site(image: np.ndarray) -> tuple[int, int]:
    """The point of soft tissue (-200..200 HU) deepest inside it."""
    tissue = ndimage.binary_opening((image > -200) & (image < 200), iterations=2)
    depth = ndimage.distance_transform_edt(tissue)
    r, c = np.unravel_index(int(np.argmax(depth)), depth.shape)
    assert depth[r, c] >= 20, "the phantom should have a patch of soft tissue to paint in"
    return int(r), int(c)


def test_acquired_noise_leaves_no_hole(acquired: np.ndarray) -> None:
    for z in range(acquired.shape[0]):
        hole = slice_hole(acquired[z], z)
        assert hole is not None and hole.radius < CLEAR_BELOW_PX
    detection = NoiseHoleDetector().detect(_volume(acquired))
    assert detection.verdict == "authentic"
    assert detection.score < OPERATING_POINT.authentic_below


def test_a_flat_fill_is_found_where_it_is(acquired: np.ndarray) -> None:
    painted = acquired.copy()
    cy, cx = _soft_tissue_site(acquired[1])
    disk = _disk(cy, cx, 16)
    painted[1][disk] = np.median(acquired[1][disk])
    detection = NoiseHoleDetector().detect(_volume(painted))
    assert detection.verdict == "manipulated"
    top = detection.findings[0]
    assert (top.kind, top.slice) == ("local", 1)
    assert np.hypot(top.row - cy, top.col - cx) <= 6
    assert top.radius >= 8


def test_a_blurred_lesion_is_found(acquired: np.ndarray) -> None:
    blurred = acquired.copy()
    cy, cx = _soft_tissue_site(acquired[0])
    disk = _disk(cy, cx, 16)
    blurred[0][disk] = np.rint(ndimage.gaussian_filter(acquired[0], 4.0))[disk]
    assert NoiseHoleDetector().detect(_volume(blurred)).verdict == "manipulated"


def test_flat_padding_at_the_edge_is_not_a_hole(acquired: np.ndarray) -> None:
    # some writers pad outside the reconstruction circle with a tissue-like value
    padded = acquired.copy()
    yy, xx = np.ogrid[:SIZE, :SIZE]
    outside = (yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 > (SIZE / 2 - 2) ** 2
    padded[:, outside] = 0.0
    detection = NoiseHoleDetector().detect(_volume(padded))
    assert detection.verdict == "authentic"


def test_what_it_does_not_assess(acquired: np.ndarray) -> None:
    detector = NoiseHoleDetector()
    mr = dataclasses.replace(_volume(acquired), modality="MR")
    assert detector.detect(mr).verdict == "inconclusive"
    lossy = detector.detect(_volume(acquired, LossyImageCompression="01"))
    assert lossy.verdict == "inconclusive" and not lossy.findings
    assert "lossy" in lossy.notes[0]
    # noise at the rounding floor: nothing to measure
    smooth = np.rint(ndimage.gaussian_filter(acquired, (0, 6, 6)))
    assert slice_hole(smooth[0]) is None


def test_rule_is_monotone_and_anchored() -> None:
    assert probability(CLEAR_BELOW_PX) == pytest.approx(0.01, abs=1e-3)
    assert probability(0.0) < probability(CLEAR_BELOW_PX) < probability(8.0)
    assert probability(8.0) == pytest.approx(0.5)


def test_auto_leads_with_the_hole(acquired: np.ndarray) -> None:
    painted = acquired.copy()
    cy, cx = _soft_tissue_site(acquired[1])
    disk = _disk(cy, cx, 16)
    painted[1][disk] = np.median(acquired[1][disk])
    auto = create_detector("auto")
    result = auto.detect(_volume(painted))
    assert result.verdict == "manipulated"
    assert result.findings[0].detail.startswith("tissue without acquisition noise")
    assert auto.detect(_volume(acquired)).verdict == "authentic"


def test_not_assessed_changes_nothing_but_notes() -> None:
    base = Detection(detector="ct-local+classical", score=0.1, verdict="authentic")
    out = with_noise_hole(base, Detection.not_assessed("noise-hole", "lossy"))
    assert (out.verdict, out.score, out.findings) == ("authentic", 0.1, [])
    assert out.notes == ["noise-hole: lossy"]


def test_smoothing_throughout_is_not_an_edit(acquired: np.ndarray) -> None:
    # an edge-preserving filter (strong iterative reconstruction looks alike): noise near the
    # rounding floor everywhere, so a flat region proves nothing
    import cv2

    filtered = np.rint(cv2.bilateralFilter(acquired[0].astype(np.float32), 15, 150, 9))
    assert slice_hole(filtered) is None
    # all the soft tissue smoothed is a smoothed slice, not one edited region
    flattened = acquired[0].copy()
    soft = (acquired[0] > -200) & (acquired[0] < 200)
    flattened[soft] = np.rint(ndimage.gaussian_filter(acquired[0], 6.0))[soft]
    assert slice_hole(flattened) is None


def test_values_clipped_by_a_display_window_are_not_holes(acquired: np.ndarray) -> None:
    # a windowed export (window floor -900 HU): a gas pocket clipped to the window's floor is
    # flat, but it is clipping, not painting
    windowed = acquired[1].copy()
    cy, cx = _soft_tissue_site(acquired[1])
    windowed[_disk(cy, cx, 16)] = -1000.0
    windowed = np.clip(windowed, -900.0, 240.0)
    hole = slice_hole(windowed)
    assert hole is None or hole.radius < CLEAR_BELOW_PX


def test_a_large_edit_is_still_one_edit(acquired: np.ndarray) -> None:
    # a region spliced from a smooth donor can cover many percent of a small slice's tissue
    # (the demo's does): one place, however large, is an edit, not a smoothed slice
    painted = acquired[0].copy()
    tissue = (acquired[0] > -950) & ndimage.binary_fill_holes(acquired[0] > -500)
    box = (slice(96, 160), slice(60, 124))
    painted[box] = np.rint(ndimage.gaussian_filter(acquired[0], 5.0))[box]
    edited = np.zeros_like(tissue)
    edited[box] = True
    assert (edited & tissue).sum() > 0.08 * tissue.sum(), "the edit should be large"
    hole = slice_hole(painted)
    assert hole is not None and hole.radius >= MIDDLE_PX
    assert 96 <= hole.row < 160 and 60 <= hole.col < 124


def test_holes_scattered_over_the_slice_are_smoothing_not_an_edit(acquired: np.ndarray) -> None:
    # soft tissue smoothed in a checkerboard of 24 px squares: flat everywhere, no one place
    yy, xx = np.mgrid[:SIZE, :SIZE]
    squares = ((yy // 24) + (xx // 24)) % 2 == 0
    smoothed = squares & (acquired[0] > -200) & (acquired[0] < 200)
    patchy = acquired[0].copy()
    patchy[smoothed] = np.rint(ndimage.gaussian_filter(acquired[0], 4.0))[smoothed]
    assert slice_hole(patchy) is None
    # one of those squares alone is an edit
    single = acquired[0].copy()
    label = (yy // 24) * SIZE + xx // 24
    fullest = np.bincount(label[smoothed]).argmax()
    one = smoothed & (label == fullest)
    assert one.sum() > 400, "the square should be soft tissue"
    single[one] = patchy[one]
    hole = slice_hole(single)
    assert hole is not None and hole.radius >= CLEAR_BELOW_PX


def test_many_small_holes_are_smoothing_not_an_edit(acquired: np.ndarray) -> None:
    # an edge-preserving filter (iterative or deep-learning reconstruction) flattens every
    # homogeneous patch a little: dozens of small holes, too few cells for the share rule
    soft = ndimage.binary_erosion((acquired[0] > -200) & (acquired[0] < 200), iterations=10)
    sites = [(y, x) for y in range(11, SIZE, 22) for x in range(11, SIZE, 22) if soft[y, x]]
    assert len(sites) >= 8, "the phantom should have room for many small flat patches"
    spotted, single = acquired[0].copy(), acquired[0].copy()
    for k, (y, x) in enumerate(sites):
        disk = _disk(y, x, 8)
        spotted[disk] = np.median(acquired[0][disk])
        if k == 0:
            single[disk] = spotted[disk]
    assert slice_hole(spotted) is None
    hole = slice_hole(single)
    assert hole is not None and hole.radius >= CLEAR_BELOW_PX
