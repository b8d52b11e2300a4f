"""CT-GAN's whole-scan re-gridding: zoom to isotropic voxels and back.

CT-GAN's tampering tool (Mirsky et al. 2019, ``scale_scan`` in its ``utils/dicom_utils.py``)
zooms the whole scan to 1 mm voxels with scipy's cubic spline, edits it there, zooms it back and
writes integers. The round trip alone, with no edit, is what ``round_trip`` reproduces: it is how
the ``resampling`` detector is checked against the pipeline's trace (``tests``,
``benchmarks/dev_resampling.py``), and a laundering step an attacker may apply on purpose.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def round_trip(
    pixels: np.ndarray, spacing: tuple[float, float, float], grid_mm: float = 1.0
) -> np.ndarray:
    """``pixels`` (slices, rows, cols) zoomed to ``grid_mm`` voxels and back, floored to integers.

    Unknown spacings (NaN, zero) count as ``grid_mm``, so that axis is left alone; so is the
    slice axis of a volume of fewer than 3 slices. The result has the input's shape (CT-GAN's
    rounding of the zoomed shape can be a voxel off: the missing edge repeats the last voxel).
    """
    if pixels.ndim != 3:
        raise ValueError(f"expected (slices, rows, cols) pixels, got shape {pixels.shape}")
    factors = np.array(
        [s / grid_mm if math.isfinite(s) and s > 0 else 1.0 for s in spacing], dtype=float
    )
    if pixels.shape[0] < 3:
        factors[0] = 1.0
    shape = np.array(pixels.shape, dtype=float)
    up = ndimage.zoom(pixels.astype(np.float64), np.round(shape * factors) / shape, mode="nearest")
    back_factors = np.round(np.array(up.shape) / factors) / np.array(up.shape)
    back = ndimage.zoom(up, back_factors, mode="nearest")
    pad = [(0, max(0, a - b)) for a, b in zip(pixels.shape, back.shape, strict=True)]
    back = np.pad(back, pad, mode="edge")[: pixels.shape[0], : pixels.shape[1], : pixels.shape[2]]
    return np.floor(back).astype(pixels.dtype if pixels.dtype.kind == "f" else np.float32)
