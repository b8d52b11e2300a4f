"""Where to look: the body (CT) or the imaged object (other modalities), not the air around it."""

from __future__ import annotations

import cv2
import numpy as np

#: HU above which a CT pixel is "patient or table", not air
_CT_BODY_HU = -500.0
#: the 4-neighbour cross: scipy's default 2D structuring element
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected part of ``mask`` (``ndimage.label``'s default connectivity)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=4)
    if count <= 2:  # background and at most one part
        return mask
    return np.asarray(labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])))


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist)
    total = weight[-1]
    if total == 0:
        return float(values.mean()) if values.size else 0.0
    mean_cum = np.cumsum(hist * centres)
    between = (mean_cum[-1] * weight - mean_cum * total) ** 2 / np.maximum(
        weight * (total - weight), 1e-12
    )
    return float(centres[int(np.argmax(between))])


def foreground_mask(image: np.ndarray, modality: str) -> np.ndarray:
    """Boolean mask of the imaged body for one 2D slice.

    CT: everything denser than -500 HU, the largest connected part (drops the table), holes
    filled so the lungs are inside. Other modalities: Otsu threshold on a smoothed copy, same
    clean-up. Falls back to the whole image minus a border when the result is implausibly small.
    """
    if modality == "CT":
        raw = image > _CT_BODY_HU
    else:
        # ndimage.uniform_filter(…, 5) to float rounding, faster; tests/detect/test_masks.py
        # checks the masks against scipy's pixel for pixel
        smooth = cv2.blur(image.astype(np.float32), (5, 5), borderType=cv2.BORDER_REFLECT)
        raw = smooth > _otsu(smooth[::4, ::4].ravel())
    mask = _fill_holes(_largest_component(_opening(np.ascontiguousarray(raw))))
    if mask.mean() < 0.05:
        mask = np.zeros_like(raw)
        border_r, border_c = image.shape[0] // 16, image.shape[1] // 16
        mask[border_r : image.shape[0] - border_r, border_c : image.shape[1] - border_c] = True
    return np.asarray(mask, dtype=bool)


def _opening(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_opening(mask, iterations=2)``, pixel for pixel, with OpenCV: the
    4-neighbour cross, nothing outside the image. With ``_fill_holes`` it took about 3 ms where
    scipy took 40 ms on a 1024² radiograph (timed when it replaced scipy here)."""
    constant = cv2.BORDER_CONSTANT
    eroded = cv2.erode(
        mask.view(np.uint8), _CROSS, iterations=2, borderType=constant, borderValue=0
    )
    opened = cv2.dilate(eroded, _CROSS, iterations=2, borderType=constant, borderValue=0)
    return np.asarray(opened).view(bool)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes(mask)``: background not reached from outside the image
    through 4-connected background is a hole."""
    outside = np.ones((mask.shape[0] + 2, mask.shape[1] + 2), dtype=np.uint8)
    outside[1:-1, 1:-1] = ~mask
    cv2.floodFill(outside, None, (0, 0), 2, flags=4)
    return np.asarray(outside[1:-1, 1:-1] != 2)
