"""Anatomically plausible phantoms with CT-like correlated noise.

They are not meant to fool a radiologist; they give tests and the demo images whose geometry,
HU ranges and noise texture (a band-pass noise power spectrum, like a filtered back-projection
kernel) are known exactly.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def correlated_noise(
    shape: tuple[int, int], sigma: float, rng: np.random.Generator, cutoff: float = 0.35
) -> np.ndarray:
    """White noise shaped by a ramp-times-Gaussian filter, the usual CT noise power spectrum.

    Args:
        shape: ``(rows, cols)``.
        sigma: standard deviation of the result (HU).
        rng: random generator.
        cutoff: peak of the spectrum as a fraction of Nyquist; sharper kernels have higher values.
    """
    white = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    radius = np.sqrt(fy**2 + fx**2) / 0.5
    nps_filter = radius * np.exp(-((radius / cutoff) ** 2) / 2.0)
    shaped = np.fft.irfft2(np.fft.rfft2(white) * nps_filter, s=shape)
    std = float(shaped.std()) or 1.0
    return (shaped * (sigma / std)).astype(np.float32)


def _ellipse(rows: int, cols: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.ogrid[:rows, :cols]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def chest_ct_phantom(
    n_slices: int = 16,
    size: int = 256,
    rng: np.random.Generator | None = None,
    noise_sigma: float = 18.0,
    kernel_cutoff: float = 0.35,
) -> np.ndarray:
    """A chest CT phantom in HU, shape ``(n_slices, size, size)``, float32.

    Body with a fat layer, two lungs with vessels, heart, spine and table-free air background.
    Lung shape changes smoothly along the slices so neighbouring slices differ like real ones.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    volume = np.full((n_slices, size, size), -1000.0, dtype=np.float32)
    c = size / 2.0
    vessel_seeds = rng.uniform(0, 1, size=(60, 2))
    vessel_drift = rng.normal(0, 0.002, size=(60, 2))
    for z in range(n_slices):
        phase = z / max(n_slices - 1, 1)
        img = np.full((size, size), -1000.0, dtype=np.float32)
        body = _ellipse(size, size, c, c, 0.34 * size, 0.44 * size)
        inner = _ellipse(size, size, c, c, 0.31 * size, 0.41 * size)
        img[body] = -100.0  # subcutaneous fat
        img[inner] = 40.0  # muscle / soft tissue
        lung_ry = (0.20 + 0.04 * np.sin(np.pi * phase)) * size
        lung_rx = 0.15 * size
        for side in (-1, 1):
            lung = _ellipse(size, size, c - 0.02 * size, c + side * 0.2 * size, lung_ry, lung_rx)
            img[lung] = -850.0
        heart = _ellipse(size, size, c + 0.05 * size, c - 0.03 * size, 0.1 * size, 0.09 * size)
        img[heart] = 45.0
        spine = _ellipse(size, size, c + 0.24 * size, c, 0.05 * size, 0.05 * size)
        img[spine] = 500.0
        lungs = img < -800
        for (sy, sx), (dy, dx) in zip(vessel_seeds, vessel_drift, strict=True):
            vy = int((sy + dy * z) % 1.0 * size)
            vx = int((sx + dx * z) % 1.0 * size)
            if lungs[vy, vx]:
                radius = 1.0 + 2.0 * ((vy * 7 + vx * 3) % 5) / 5.0
                blob = _ellipse(size, size, vy, vx, radius, radius)
                img[blob & lungs] = -50.0
        img = ndimage.gaussian_filter(img, 0.8)
        img += correlated_noise((size, size), noise_sigma, rng, kernel_cutoff)
        # air outside the body is noisy too, but clipped at the scanner floor
        volume[z] = np.clip(img, -1024.0, 3071.0)
    return volume


def radiograph_phantom(
    size: int = 512, rng: np.random.Generator | None = None, noise_sigma: float = 6.0
) -> np.ndarray:
    """A chest-radiograph-like image in 12-bit stored values, shape ``(1, size, size)``."""
    rng = rng if rng is not None else np.random.default_rng(0)
    c = size / 2.0
    img = np.full((size, size), 300.0, dtype=np.float32)
    img[_ellipse(size, size, c, c, 0.45 * size, 0.42 * size)] = 2200.0
    for side in (-1, 1):
        img[
            _ellipse(size, size, c - 0.05 * size, c + side * 0.18 * size, 0.3 * size, 0.13 * size)
        ] = 900.0
    img[_ellipse(size, size, c + 0.08 * size, c - 0.04 * size, 0.14 * size, 0.12 * size)] = 1900.0
    yy = np.arange(size)[:, None]
    for k in range(8):  # ribs
        rib_y = 0.22 * size + k * 0.07 * size
        img += 250.0 * np.exp(-(((yy - rib_y) / (0.012 * size)) ** 2)).astype(np.float32)
    img = ndimage.gaussian_filter(img, 2.0)
    img += correlated_noise((size, size), noise_sigma, rng, cutoff=0.6)
    img += rng.poisson(np.clip(img, 1, None) / 50.0).astype(np.float32) * 0.5
    return np.clip(img, 0, 4095)[None].astype(np.float32)
