"""Radiograph-like images simulated from CT: a projection with an X-ray detector's noise.

Real radiographs for training are scarce; a CT series holds the attenuation a radiograph
integrates. ``ct_projection`` turns one into a digital radiograph (modality ``DX``):

1. Hounsfield units to linear attenuation, ``mu = mu_water * (1 + HU / 1000)`` (air and the
   out-of-field padding clipped to 0);
2. the line integral of ``mu`` along one axis (``axis=1``: rows, front to back for axial
   slices, an AP view), in mm, the slice direction resampled to the in-plane pixel spacing;
3. Beer-Lambert: expected photon counts ``photons * exp(-integral)`` per pixel, drawn with
   signal-dependent (Poisson-like) quantum noise;
4. a slight Gaussian blur after the noise, the light spread of a scintillator, which correlates
   the noise the way a flat-panel detector does;
5. the log signal, auto-ranged like a CR/DR reader to ``2**bits - 1`` and rounded (12 bits by
   default), head end up.

The images look like plain films to the eye only roughly; their noise is what matters for
forensics: signal-dependent, correlated over a pixel or so, on a 12-bit grid.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from medforensics.io.types import ImageVolume

#: linear attenuation of water at about 60 keV, per mm
MU_WATER = 0.02


def ct_projection(
    volume: ImageVolume,
    rng: np.random.Generator,
    axis: int = 1,
    *,
    photons: float = 4000.0,
    blur_sigma: float = 0.7,
    bits: int = 12,
    mu_water: float = MU_WATER,
    pixel_mm: float | None = None,
) -> ImageVolume:
    """A simulated projection radiograph of a CT volume.

    Args:
        volume: a CT ``ImageVolume`` in HU, at least 2 slices.
        rng: draws the quantum noise.
        axis: pixel axis to integrate along: 1 (rows; AP for axial slices) or 2 (columns;
            lateral).
        photons: expected photon count per pixel without attenuation (dose: fewer, noisier).
        blur_sigma: Gaussian blur of the detector, in output pixels.
        bits: stored bits of the output values.
        mu_water: attenuation of water per mm.
        pixel_mm: output pixel size; default the CT's in-plane spacing across the projection.
            A finer one (a flat panel's 0.15-0.2 mm) gives a larger image whose anatomy is
            as smooth as the CT's but whose noise is drawn at every output pixel.

    Returns:
        A one-slice ``DX`` volume ``(1, rows, cols)``: rows run along the patient's axis (head
        up when the slice positions say which way that is), cols along the other in-plane axis.

    Raises:
        ValueError: for a non-CT or single-slice volume, or an axis other than 1 or 2.
    """
    if volume.modality != "CT":
        raise ValueError(f"{volume.input}: ct_projection needs a CT volume, not {volume.modality}")
    if axis not in (1, 2):
        raise ValueError(f"axis must be 1 (rows, AP) or 2 (columns, lateral), not {axis}")
    if volume.shape[0] < 2:
        raise ValueError(f"{volume.input}: a projection needs a CT volume of several slices")
    slice_mm, row_mm, col_mm = (float(s) for s in volume.spacing)
    row_mm = row_mm if math.isfinite(row_mm) and row_mm > 0 else 1.0
    col_mm = col_mm if math.isfinite(col_mm) and col_mm > 0 else row_mm
    slice_mm = slice_mm if math.isfinite(slice_mm) and slice_mm > 0 else row_mm
    along_mm, across_mm = (row_mm, col_mm) if axis == 1 else (col_mm, row_mm)

    mu = np.clip(volume.pixels.astype(np.float64) / 1000.0 + 1.0, 0.0, None) * mu_water
    integral = mu.sum(axis=axis) * along_mm  # (slices, across)
    # the slice direction is usually much coarser than the pixels: resample to square pixels
    out_mm = float(pixel_mm) if pixel_mm else across_mm
    zoom = (slice_mm / out_mm, across_mm / out_mm)
    if max(abs(zoom[0] - 1.0), abs(zoom[1] - 1.0)) > 1e-3:
        integral = ndimage.zoom(integral, zoom, order=1, mode="nearest")
    if _feet_first(volume):
        integral = integral[::-1]

    expected = photons * np.exp(-integral)
    # Poisson counts, drawn as a Gaussian of variance = mean (the counts are large enough)
    counts = expected + np.sqrt(expected) * rng.standard_normal(expected.shape)
    if blur_sigma > 0:
        counts = ndimage.gaussian_filter(counts, blur_sigma)
    log_signal = -np.log(np.clip(counts, 0.5, None) / photons)
    top = float(np.percentile(log_signal, 99.9)) or 1.0
    full_scale = 2**bits - 1
    stored = np.clip(np.rint(log_signal / top * 0.95 * full_scale), 0, full_scale)

    view = "AP" if axis == 1 else "lateral"
    return ImageVolume(
        input=f"{volume.input} [{view} projection]",
        kind="image",
        modality="DX",
        pixels=stored[None].astype(np.float32),
        spacing=(math.nan, out_mm, out_mm),
        bits_stored=bits,
        attributes={
            "DerivationDescription": (
                f"simulated {view} projection radiograph of CT {volume.input} "
                f"({photons:g} photons/pixel, blur {blur_sigma:g} px, {bits} bits)"
            ),
            "ImageType": "DERIVED\\SECONDARY",
        },
    )


def _feet_first(volume: ImageVolume) -> bool:
    """True when z grows with the slice index: slice 0 is the foot end, flip to put the head up."""
    if volume.positions is None or len(volume.positions) < 2:
        return False
    z = np.asarray(volume.positions, dtype=np.float64)[:, 2]
    # patient z grows towards the head: increasing z means slice 0 is the lowest (feet end)
    return bool(z[-1] > z[0])
