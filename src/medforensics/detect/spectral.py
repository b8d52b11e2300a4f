"""Frequency and wavelet features of one slice: the fingerprints generators leave behind.

Generated images differ from acquired ones less in what they show than in how their pixels
vary at the finest scales:

* the **azimuthally averaged power spectrum of the noise residual**: CT noise has the band-pass
  spectrum of the reconstruction kernel; a decoder's output is smoother, or has noise of
  another colour;
* **periodic peaks and notches** in the spectrum: upsampling by a factor ``f`` leaves a trace
  at ``k/f`` cycles per pixel in the marginal spectra along rows and columns: peaks where a
  transposed convolution repeats a checkerboard every ``f`` pixels, notches where nearest or
  bilinear resizing (a box or triangle filter) has the zeros of its transfer function;
* **wavelet sub-band energies**: the energy of the horizontal, vertical and diagonal Haar detail
  bands, level by level, relative to the image's total detail energy.

Everything is plain numpy; ``feature_matrix`` stacks the features of many slices for a linear
model or a tree ensemble.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: upsampling factors whose periodic peaks are measured
UPSAMPLING_FACTORS = (2, 4, 8)
#: floor added before taking logarithms of power (keeps blank images finite)
_EPS = 1e-12


def noise_residual(image: np.ndarray) -> np.ndarray:
    """``image`` minus its 3×3 mean: the high-pass residual generators get wrong, float64."""
    pixels = np.asarray(image, dtype=np.float64)
    return pixels - ndimage.uniform_filter(pixels, size=3, mode="reflect")


def _power_spectrum(residual: np.ndarray) -> np.ndarray:
    """|FFT|² of the Hann-windowed, zero-mean residual (window: no leakage from the borders)."""
    rows, cols = residual.shape
    taper = np.outer(np.hanning(rows), np.hanning(cols))
    centred = (residual - residual.mean()) * taper
    return np.abs(np.fft.fft2(centred)) ** 2 / max(float(np.sum(taper**2)), _EPS)


def radial_log_spectrum(residual: np.ndarray, bins: int = 32) -> np.ndarray:
    """Log10 of the azimuthally averaged power per radial frequency bin, relative to the mean.

    Bins are equal steps of radial frequency from 0 to 0.5 cycles/pixel (corners beyond Nyquist
    along an axis are left out). Subtracting the mean log power keeps the shape of the
    spectrum and drops the noise level, which depends on dose and scanner.
    """
    power = _power_spectrum(residual)
    fy = np.fft.fftfreq(residual.shape[0])[:, None]
    fx = np.fft.fftfreq(residual.shape[1])[None, :]
    radius = np.sqrt(fy**2 + fx**2)
    which = np.floor(radius / 0.5 * bins).astype(int).ravel()
    inside = which < bins
    sums = np.bincount(which[inside], weights=power.ravel()[inside], minlength=bins)
    counts = np.bincount(which[inside], minlength=bins)
    log_power = np.log10(sums / np.maximum(counts, 1) + _EPS)
    return log_power - log_power.mean()


def _peak_ratio(marginal: np.ndarray, factor: int) -> float:
    """Largest |log10 ratio| of the power at ``k/factor`` to its neighbourhood's median.

    The absolute value counts notches (interpolation zeros) as well as peaks (checkerboards).
    """
    n = marginal.size
    best = 0.0
    for k in range(1, factor):
        centre = round(k * n / factor)
        if not 0 < centre < n:
            continue
        lo, hi = max(centre - 6, 0), min(centre + 7, n)
        neighbours = np.concatenate([marginal[lo : max(centre - 1, lo)], marginal[centre + 2 : hi]])
        if neighbours.size == 0:
            continue
        site = marginal[max(centre - 1, 0) : centre + 2]
        reference = np.median(neighbours) + _EPS
        peak = float(np.log10((site.max() + _EPS) / reference))
        notch = float(np.log10((site.min() + _EPS) / reference))
        best = max(best, peak, -notch)
    return best


def upsampling_peaks(
    residual: np.ndarray, factors: Iterable[int] = UPSAMPLING_FACTORS
) -> np.ndarray:
    """For each factor, the strongest periodic peak or notch of the row and column marginals."""
    power = _power_spectrum(residual)
    along_cols = power.mean(axis=0)  # frequencies along the column index
    along_rows = power.mean(axis=1)
    return np.array(
        [0.5 * (_peak_ratio(along_cols, f) + _peak_ratio(along_rows, f)) for f in factors]
    )


def _haar_step(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
    x = image[:rows, :cols]
    a, b = x[0::2, 0::2], x[0::2, 1::2]
    c, d = x[1::2, 0::2], x[1::2, 1::2]
    return (a + b + c + d) / 2, (a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2


def wavelet_energies(image: np.ndarray, levels: int = 3) -> np.ndarray:
    """Log10 share of each Haar detail band (horizontal, vertical, diagonal per level).

    Returns ``3 * levels`` values, finest level first; each is the band's mean square over the
    mean square of all detail bands, so the level of contrast drops out.
    """
    approx = np.asarray(image, dtype=np.float64)
    energies = []
    for _ in range(levels):
        if min(approx.shape) < 2:
            energies.extend([0.0, 0.0, 0.0])
            continue
        approx, horizontal, vertical, diagonal = _haar_step(approx)
        energies.extend(float(np.mean(band**2)) for band in (horizontal, vertical, diagonal))
    values = np.asarray(energies)
    return np.log10((values + _EPS) / (values.mean() + _EPS))


@dataclass(frozen=True)
class SpectralFeatures:
    """The spectral fingerprint of one slice.

    Attributes:
        radial: relative log power of the residual per radial frequency bin.
        peaks: strongest |log10| peak or notch ratio per upsampling factor.
        wavelet: relative log energy of each Haar detail band.
        residual_level: log10 of the residual's standard deviation (the noise level).
    """

    radial: np.ndarray
    peaks: np.ndarray
    wavelet: np.ndarray
    residual_level: float

    def vector(self) -> np.ndarray:
        """All features in one float64 vector, in the order of ``names``."""
        return np.concatenate([self.radial, self.peaks, self.wavelet, [self.residual_level]])

    def names(self) -> list[str]:
        levels = len(self.wavelet) // 3
        return (
            [f"radial_{k}" for k in range(len(self.radial))]
            + [f"peak_x{f}" for f in UPSAMPLING_FACTORS[: len(self.peaks)]]
            + [f"haar_{lvl}_{band}" for lvl in range(levels) for band in ("h", "v", "d")]
            + ["residual_level"]
        )


def spectral_features(
    image: np.ndarray,
    window: tuple[float, float] | None = None,
    bins: int = 32,
    levels: int = 3,
) -> SpectralFeatures:
    """Spectral features of one 2D slice.

    Args:
        image: ``(rows, cols)`` pixel values (HU for CT).
        window: optional ``(low, high)`` clip before analysis; for CT, clipping out-of-field
            padding (-3024 HU and the like) keeps its edge out of the spectrum.
        bins: radial frequency bins.
        levels: Haar decomposition levels.
    """
    pixels = np.asarray(image, dtype=np.float64)
    if pixels.ndim != 2:
        raise ValueError(f"spectral_features takes one 2D slice, got shape {pixels.shape}")
    if window is not None:
        pixels = np.clip(pixels, window[0], window[1])
    residual = noise_residual(pixels)
    return SpectralFeatures(
        radial=radial_log_spectrum(residual, bins),
        peaks=upsampling_peaks(residual),
        wavelet=wavelet_energies(pixels, levels),
        residual_level=float(np.log10(residual.std() + _EPS)),
    )


def feature_matrix(
    slices: Iterable[np.ndarray], window: tuple[float, float] | None = None
) -> np.ndarray:
    """``(n, features)`` matrix for an iterable of 2D slices (or 3D stacks, slice by slice)."""
    rows = []
    for item in slices:
        array = np.asarray(item)
        for plane in [array] if array.ndim == 2 else array:
            rows.append(spectral_features(plane, window).vector())
    if not rows:
        raise ValueError("feature_matrix needs at least one slice")
    return np.stack(rows)
