"""Where to look: the body (CT) or the imaged object (other modalities), not the air around it."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: HU above which a CT pixel is "patient or table", not air
_CT_BODY_HU = -500.0


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    return labels == (int(np.argmax(sizes)) + 1)


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
        smooth = ndimage.uniform_filter(image.astype(np.float32), 5)
        raw = smooth > _otsu(smooth[::4, ::4].ravel())
    mask = ndimage.binary_fill_holes(_largest_component(ndimage.binary_opening(raw, iterations=2)))
    if mask.mean() < 0.05:
        mask = np.zeros_like(raw)
        border_r, border_c = image.shape[0] // 16, image.shape[1] // 16
        mask[border_r : image.shape[0] - border_r, border_c : image.shape[1] - border_c] = True
    return np.asarray(mask, dtype=bool)
