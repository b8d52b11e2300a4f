"""The body mask: OpenCV operations that must give scipy's masks pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medforensics.detect.masks import foreground_mask
from medforensics.samples import chest_ct_phantom, radiograph_phantom


def _scipy_mask(image: np.ndarray, modality: str) -> np.ndarray:
    """The mask as first written with scipy (the reference the OpenCV version replaced)."""
    from medforensics.detect.masks import _otsu

    if modality == "CT":
        raw = image > -500.0
    else:
        smooth = ndimage.uniform_filter(image.astype(np.float32), 5)
        raw = smooth > _otsu(smooth[::4, ::4].ravel())
    opened = ndimage.binary_opening(raw, iterations=2)
    labels, count = ndimage.label(opened)
    if count > 1:
        sizes = ndimage.sum_labels(opened, labels, index=np.arange(1, count + 1))
        opened = labels == int(np.argmax(sizes)) + 1
    mask = ndimage.binary_fill_holes(opened)
    if mask.mean() < 0.05:
        mask = np.zeros_like(raw)
        r, c = image.shape[0] // 16, image.shape[1] // 16
        mask[r : image.shape[0] - r, c : image.shape[1] - c] = True
    return np.asarray(mask, dtype=bool)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_masks_as_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    radiograph = radiograph_phantom(512, rng)[0].astype(np.float32)
    ct = np.rint(chest_ct_phantom(1, 256, rng))[0].astype(np.float32)
    # an MR-like image: a bright head in dark noise, with a separate blob (two parts)
    yy, xx = np.mgrid[:200, :180]
    mr = 10 * rng.standard_normal((200, 180)) + 300 * (
        (yy - 90) ** 2 / 70**2 + (xx - 90) ** 2 / 60**2 < 1
    )
    mr[180:195, 10:25] += 300
    for image, modality in ((radiograph, "OT"), (ct, "CT"), (mr.astype(np.float32), "MR")):
        expected = _scipy_mask(image, modality)
        assert np.array_equal(foreground_mask(image, modality), expected), modality


def test_largest_part_is_4_connected_like_scipy() -> None:
    # random masks are full of parts that touch only diagonally
    from medforensics.detect.masks import _largest_component

    rng = np.random.default_rng(3)
    for density in (0.45, 0.55, 0.6):
        mask = ndimage.uniform_filter(rng.random((96, 96)), 3) > 1 - density
        labels, count = ndimage.label(mask)
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
        expected = labels == int(np.argmax(sizes)) + 1
        assert np.array_equal(_largest_component(mask), expected), density
