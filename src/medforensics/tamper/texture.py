"""Noise texture matching and edge blending shared by the attacks.

A pasted or in-painted region that is smoother than its surroundings is the easiest tamper
artefact to see. Every attack that replaces pixels therefore adds fresh noise whose noise power
spectrum (NPS) is estimated from the authentic pixels around the region: CT noise is coloured by
the reconstruction kernel (a band-pass NPS), so white noise of the right standard deviation
would still be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

#: Gaussian scale (pixels) separating "structure" from "noise" in the residuals
STRUCTURE_SIGMA = 1.5
#: size of the NPS grid (twice the largest autocovariance lag measured)
NPS_BLOCK = 32


def highpass(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """``image`` minus its Gaussian blur, per 2D slice; the residual tests measure noise on."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        return image - ndimage.gaussian_filter(image, sigma)
    return np.stack([highpass(plane, sigma) for plane in image])


@dataclass(frozen=True)
class NoiseModel:
    """A radially symmetric 2D NPS plus the correlation of noise between adjacent slices.

    Attributes:
        freqs: radial frequency bin centres (cycles/pixel, 0..0.5*sqrt(2)).
        power: NPS value per bin (variance per unit frequency area, so ``mean(power)`` over the
            full 2D frequency grid is the noise variance).
        sigma: standard deviation of the noise this model synthesises.
        slice_rho: correlation coefficient between the noise of adjacent slices.
    """

    freqs: np.ndarray
    power: np.ndarray
    sigma: float
    slice_rho: float = 0.0

    def describe(self) -> dict[str, float]:
        return {"noise_sigma": round(self.sigma, 3), "slice_rho": round(self.slice_rho, 3)}


def _radial_bins(shape: tuple[int, int]) -> np.ndarray:
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    return np.sqrt(fy**2 + fx**2)


def _structure_transfer(radius: np.ndarray) -> np.ndarray:
    """|1 - G(f)|^2 for the Gaussian high-pass used to strip anatomy from the residual."""
    gauss = np.exp(-2.0 * (np.pi * STRUCTURE_SIGMA * radius) ** 2)
    return (1.0 - gauss) ** 2


def _robust_sigma(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values)))) if values.size else 0.0


def structure_mask(residual: np.ndarray) -> np.ndarray:
    """Pixels of a high-pass residual that belong to edges or vessels, not to noise.

    Edges are sparse, so the median absolute residual still measures the noise; anything beyond
    3.5 robust sigmas, and two pixels around it (the ringing of the high-pass), is structure.
    The robust sigma is then re-measured without the structure found so far, a few times.
    """
    structure = np.zeros(residual.shape, dtype=bool)
    for _ in range(4):  # vessels can cover a third of a lung patch: re-estimate without them
        sigma = _robust_sigma(residual[~structure])
        outliers = np.abs(residual) > 3.5 * max(sigma, 1e-6)
        structure = ndimage.binary_dilation(outliers, iterations=2)
    return structure


def estimate_noise(
    image: np.ndarray, exclude: np.ndarray | None = None, max_lag: int = NPS_BLOCK // 2
) -> NoiseModel:
    """Estimate the NPS of a 2D patch (or the slices of a 3D patch).

    The patch is high-passed to strip anatomy, and pixels that still stand out (edges, vessels,
    see ``structure_mask``) are left out. The autocovariance of the remaining residual is
    measured with a masked FFT correlation (each lag averaged over the pixel pairs that are both
    kept), tapered to ``max_lag`` pixels and Fourier-transformed (a Blackman-Tukey estimate, which
    copes with the holes vessels leave). The high-pass transfer function is divided out where it
    is not tiny, and the spectrum is averaged over rings: CT noise is close to isotropic in the
    axial plane.

    Args:
        image: ``(rows, cols)`` or ``(slices, rows, cols)`` authentic pixels.
        exclude: optional bool array of the same shape; pixels not to learn from.
        max_lag: largest correlation lag used, in pixels.

    Raises:
        ValueError: when too few pixels are left to measure the noise.
    """
    stack = np.asarray(image, dtype=np.float64)
    stack = stack[None] if stack.ndim == 2 else stack
    excl = None if exclude is None else (exclude[None] if exclude.ndim == 2 else exclude)
    rows, cols = stack.shape[1:]
    shape = (rows + max_lag, cols + max_lag)  # zero padding: no wrap-around for lags <= max_lag
    numerator = np.zeros(shape)
    pairs = np.zeros(shape)
    residuals: list[np.ndarray] = []
    keeps: list[np.ndarray] = []
    for z, plane in enumerate(stack):
        residual = highpass(plane, STRUCTURE_SIGMA).astype(np.float64)
        keep = ~structure_mask(residual)
        if excl is not None:
            keep &= ~excl[z]
        if keep.sum() < 64:
            continue
        residual = np.where(keep, residual - residual[keep].mean(), 0.0)
        residuals.append(residual)
        keeps.append(keep)
        numerator += np.real(np.fft.ifft2(np.abs(np.fft.fft2(residual, shape)) ** 2))
        pairs += np.real(np.fft.ifft2(np.abs(np.fft.fft2(keep.astype(np.float64), shape)) ** 2))
    if not keeps or pairs[0, 0] < 256:
        raise ValueError(f"too few noise-only pixels to estimate noise in a {stack.shape} patch")
    size = 2 * max_lag
    lags = np.fft.fftfreq(size) * size  # 0, 1, ..., max_lag - 1, -max_lag, ..., -1
    ly, lx = np.meshgrid(lags.astype(int), lags.astype(int), indexing="ij")
    counts = pairs[ly % shape[0], lx % shape[1]]
    autocov = numerator[ly % shape[0], lx % shape[1]] / np.maximum(counts, 1.0)
    autocov[counts < 32] = 0.0
    lag_radius = np.sqrt(ly.astype(float) ** 2 + lx.astype(float) ** 2) / max_lag
    taper = np.where(lag_radius < 1.0, 0.5 * (1.0 + np.cos(np.pi * lag_radius)), 0.0)
    spectrum = np.clip(np.real(np.fft.fft2(autocov * taper)), 0.0, None)
    radius = _radial_bins((size, size))
    spectrum = spectrum / np.maximum(_structure_transfer(radius), 0.25)
    edges = np.linspace(0.0, radius.max() + 1e-6, max_lag + 2)
    which = np.digitize(radius.ravel(), edges) - 1
    bin_counts = np.bincount(which, minlength=len(edges) - 1)
    sums = np.bincount(which, weights=spectrum.ravel(), minlength=len(edges) - 1)
    power = sums / np.maximum(bin_counts, 1)
    freqs = 0.5 * (edges[:-1] + edges[1:])
    sigma = float(np.sqrt(max(spectrum.mean(), 0.0)))
    return NoiseModel(freqs=freqs, power=power, sigma=sigma, slice_rho=_slice_rho(residuals, keeps))


def _slice_rho(residuals: list[np.ndarray], keeps: list[np.ndarray]) -> float:
    rhos = []
    for z in range(len(residuals) - 1):
        both = keeps[z] & keeps[z + 1]
        a, b = residuals[z][both], residuals[z + 1][both]
        if a.size > 16 and a.std() > 0 and b.std() > 0:
            rhos.append(float(np.corrcoef(a, b)[0, 1]))
    return float(np.clip(np.median(rhos), 0.0, 0.95)) if rhos else 0.0


def synthesize_noise(
    shape: tuple[int, ...], model: NoiseModel, rng: np.random.Generator
) -> np.ndarray:
    """Fresh noise with ``model``'s NPS: ``(rows, cols)`` or ``(slices, rows, cols)``.

    Slices follow an AR(1) process with the model's slice correlation. The noise is made on a
    grid padded to at least 64 pixels so small regions still get the right spectrum.
    """
    planes = 1 if len(shape) == 2 else shape[0]
    rows, cols = shape[-2], shape[-1]
    pad_rows, pad_cols = max(rows, 64), max(cols, 64)
    radius = _radial_bins((pad_rows, pad_cols))
    amplitude = np.sqrt(np.interp(radius, model.freqs, model.power, right=model.power[-1]))
    out = np.empty((planes, rows, cols), dtype=np.float32)
    previous: np.ndarray | None = None
    rho = model.slice_rho
    for z in range(planes):
        white = rng.standard_normal((pad_rows, pad_cols))
        plane = np.real(np.fft.ifft2(np.fft.fft2(white) * amplitude))[:rows, :cols]
        if previous is not None and rho > 0:
            plane = rho * previous + np.sqrt(1.0 - rho**2) * plane
        previous = plane
        out[z] = plane
    return out[0] if len(shape) == 2 else out


def noise_for_region(
    pixels: np.ndarray,
    box: tuple[slice, slice, slice],
    rng: np.random.Generator,
    context: int = 40,
    exclude: np.ndarray | None = None,
    tissue_tolerance: float | None = None,
) -> tuple[np.ndarray, NoiseModel]:
    """Noise for ``pixels[box]`` whose NPS matches the authentic pixels around the box.

    Real CT noise is not stationary (iterative reconstruction, edge-enhancing kernels), so with
    ``tissue_tolerance`` the noise is learnt only from pixels of the same tissue as the site:
    those whose smoothed value is within the tolerance of the site's median smoothed value.

    Args:
        pixels: the authentic ``(slices, rows, cols)`` image.
        box: the region the noise is for.
        rng: generator for the white noise.
        context: pixels of surroundings taken on each side of the box.
        exclude: optional bool mask (same shape as ``pixels``) of pixels not to learn from.
        tissue_tolerance: learn only from the site's tissue (same units as ``pixels``).
    """
    zs, ys, xs = box
    rows, cols = pixels.shape[1:]
    y0, y1 = max(ys.start - context, 0), min(ys.stop + context, rows)
    x0, x1 = max(xs.start - context, 0), min(xs.stop + context, cols)
    # three slices are enough for the NPS and the slice correlation, and keep this fast
    mid = (zs.start + zs.stop) // 2
    learn = slice(max(mid - 1, 0), min(mid + 2, pixels.shape[0]))
    patch = pixels[learn, y0:y1, x0:x1]
    excl = None if exclude is None else exclude[learn, y0:y1, x0:x1]
    if tissue_tolerance is not None:
        smooth = np.stack([ndimage.gaussian_filter(p, 2.0) for p in patch.astype(np.float32)])
        site = float(
            np.median(smooth[:, ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0])
        )
        other = np.abs(smooth - site) > tissue_tolerance
        excl = other if excl is None else (excl | other)
    try:
        model = estimate_noise(patch, excl)
    except ValueError:
        model = estimate_noise(patch, None)
    shape = (zs.stop - zs.start, ys.stop - ys.start, xs.stop - xs.start)
    return synthesize_noise(shape, model, rng), model


def feather(mask: np.ndarray, width: float) -> np.ndarray:
    """Alpha in [0, 1] that ramps from 0 at the edge of ``mask`` to 1 ``width`` pixels inside.

    Works per 2D slice; the ramp is a smoothstep so no second-order edge is left.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 3:
        return np.stack([feather(plane, width) for plane in mask])
    if width <= 0:
        return mask.astype(np.float32)
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    ramp = np.clip(inside / float(width), 0.0, 1.0)
    return (ramp * ramp * (3.0 - 2.0 * ramp)).astype(np.float32)


def blend_with_noise(
    background: np.ndarray, content: np.ndarray, alpha: np.ndarray, noise: np.ndarray
) -> np.ndarray:
    """``background*(1-alpha) + content*alpha`` plus noise that keeps the variance constant.

    The background's own noise is scaled by ``1 - alpha``; the fresh noise is scaled by
    ``sqrt(1 - (1 - alpha)^2)`` so that the total noise variance is the same everywhere, and is
    exactly zero where ``alpha`` is zero (pixels outside the mask are untouched).
    """
    keep = 1.0 - alpha
    fresh = np.sqrt(np.clip(1.0 - keep**2, 0.0, 1.0))
    return (background * keep + content * alpha + noise * fresh).astype(np.float32)
