"""Display windows (centre/width) per modality and the mapping to 8-bit gray.

A window decides what a person can see: CT in Hounsfield units has a meaning, so the usual
radiology windows apply (lung when there is lung in the image, soft tissue otherwise); other
modalities store arbitrary units, so the window spans their 1st to 99th percentile.
"""

from __future__ import annotations

import numpy as np

from medforensics.io.types import ImageVolume

#: (centre, width) in HU
LUNG_WINDOW = (-600.0, 1500.0)
SOFT_TISSUE_WINDOW = (40.0, 400.0)
#: share of the voxels in the lung range (-950..-500 HU) above which the lung window is used
LUNG_SHARE = 0.02
#: voxels looked at when a window is estimated (a regular subsample keeps it fast on big series)
SAMPLE_VOXELS = 2_000_000


def _sample(pixels: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil(pixels.size / SAMPLE_VOXELS)))
    flat = pixels.reshape(-1)[::step]
    return flat[np.isfinite(flat)]


def percentile_window(
    pixels: np.ndarray, low: float = 1.0, high: float = 99.0
) -> tuple[float, float]:
    """``(centre, width)`` spanning the ``low``..``high`` percentiles of ``pixels``."""
    values = _sample(pixels)
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [low, high]))
    if hi <= lo:  # a flat image: any window shows it as mid gray
        return lo, 1.0
    return (lo + hi) / 2.0, hi - lo


def display_window(volume: ImageVolume) -> tuple[float, float]:
    """``(centre, width)`` to show ``volume`` with.

    CT: the lung window (-600, 1500) when at least 2 % of the voxels are in the lung range,
    else the soft-tissue window (40, 400). Every other modality: its 1st..99th percentile.
    """
    if volume.modality == "CT":
        values = _sample(volume.pixels)
        lung_share = float(np.mean((values > -950) & (values < -500))) if values.size else 0.0
        return LUNG_WINDOW if lung_share >= LUNG_SHARE else SOFT_TISSUE_WINDOW
    return percentile_window(volume.pixels)


def to_uint8(image: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear window: ``center - width/2`` → 0, ``center + width/2`` → 255; same shape, uint8."""
    width = max(float(width), 1e-6)
    low = float(center) - width / 2.0
    scaled = (np.asarray(image, dtype=np.float32) - low) * (255.0 / width)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)
