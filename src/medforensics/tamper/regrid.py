"""CT-GAN's whole-scan re-gridding: zoom to isotropic voxels and back.

CT-GAN's tampering tool (Mirsky et al. 2019, ``scale_scan`` in its ``utils/dicom_utils.py``)
zooms the whole scan to 1 mm voxels with scipy's cubic spline, edits it there, zooms it back and
writes integers. The round trip alone, with no edit, is what ``round_trip`` reproduces: it is how
the ``resampling`` detector is checked against the pipeline's trace (``tests``,
``benchmarks/dev_resampling.py``), and a laundering step an attacker may apply on purpose.
``touch_up_injection`` adds CT-GAN's touch-up around an injection site, which pastes original
pixels back into the re-gridded scan (what ``detect.resampling_map`` looks for).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from scipy.stats import norm


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


def touch_up_weights(size: int = 64, extent: float = 3.0) -> np.ndarray:
    """The in-plane blend weight of CT-GAN's touch-up: a Gaussian bump over ±``extent`` sigma
    across ``size`` pixels, scaled to [0, 1] (1 at the centre, 0 in the corners)."""
    edges = np.linspace(-extent, extent, size + 1)
    profile = np.diff(norm.cdf(edges))
    bump = np.sqrt(np.outer(profile, profile))
    return (bump - bump.min()) / (bump.max() - bump.min())


def touch_up_injection(
    original: np.ndarray, regridded: np.ndarray, centre: tuple[int, int, int], size: int = 64
) -> np.ndarray:
    """``regridded`` with CT-GAN's injection touch-up around ``centre`` (its added noise left out).

    In a ``size``-voxel cube around the injection, CT-GAN keeps
    ``max(w·regridded + (1 − w)·original, original)`` with ``w = sigmoid((HU + 700) / 70)`` times
    the in-plane bump of ``touch_up_weights``: dense voxels near the centre stay re-gridded (the
    injected nodule), and lung and the cube's rim go back to the original pixels. Returns a copy.
    """
    out = regridded.copy()
    box, bump = _cube(original.shape, centre, size, extent=3.0)
    mal, ben = regridded[box].astype(np.float64), original[box].astype(np.float64)
    weight = 1.0 / (1.0 + np.exp(-(mal + 700.0) / 70.0)) * bump[None]
    out[box] = np.maximum(mal * weight + ben * (1.0 - weight), ben).astype(out.dtype)
    return out


def touch_up_removal(
    original: np.ndarray, regridded: np.ndarray, centre: tuple[int, int, int], size: int = 64
) -> np.ndarray:
    """``regridded`` with CT-GAN's removal touch-up around ``centre`` (its added noise left out).

    CT-GAN blends ``w·regridded + (1 − w)·original`` over a ``size``-voxel cube with a nearly flat
    bump ``w`` (``touch_up_weights(size, 0.1)``): the centre stays re-gridded (the filled-in
    tissue), the rim goes back to the original pixels. Returns a copy.
    """
    out = regridded.copy()
    box, bump = _cube(original.shape, centre, size, extent=0.1)
    mal, ben = regridded[box].astype(np.float64), original[box].astype(np.float64)
    out[box] = (mal * bump[None] + ben * (1.0 - bump[None])).astype(out.dtype)
    return out


def _cube(
    shape: tuple[int, ...], centre: tuple[int, int, int], size: int, extent: float
) -> tuple[tuple[slice, ...], np.ndarray]:
    """The ``size``-voxel cube around ``centre`` clipped to ``shape``, and its in-plane bump."""
    box = tuple(
        slice(max(0, c - size // 2), min(n, c - size // 2 + size))
        for c, n in zip(centre, shape, strict=True)
    )
    bump = touch_up_weights(size, extent)
    lo_r, lo_c = centre[1] - size // 2, centre[2] - size // 2
    bump = bump[box[1].start - lo_r : box[1].stop - lo_r, box[2].start - lo_c : box[2].stop - lo_c]
    return box, bump
