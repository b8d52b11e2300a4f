"""Where an attack may plausibly act: lung parenchyma, lung fields, brain; spacing in mm."""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage

from medforensics.io.types import ImageVolume

#: pixel spacing assumed when the header gives none (a typical chest CT in-plane spacing)
DEFAULT_SPACING_MM = 0.7
#: HU window of aerated lung parenchyma
LUNG_HU = (-950.0, -500.0)


#: field of view assumed for a radiograph without pixel spacing (a chest cassette is 35-43 cm)
DEFAULT_PROJECTION_FOV_MM = 400.0


def spacing_mm(volume: ImageVolume) -> tuple[float, float, float]:
    """``(slice, row, col)`` spacing in mm, with unknown (NaN or zero) values filled in.

    Unknown spacing becomes ``DEFAULT_SPACING_MM``, except the in-plane spacing of a radiograph,
    which is taken as ``DEFAULT_PROJECTION_FOV_MM`` over the longer side (0.7 mm pixels would
    make a 2000-pixel radiograph 1.4 m wide and every lesion a few pixels).
    """
    fallback = DEFAULT_SPACING_MM
    if is_projection(volume):
        fallback = DEFAULT_PROJECTION_FOV_MM / max(volume.shape[1:])
    known = [s is not None and math.isfinite(s) and s > 0 for s in volume.spacing]
    return tuple(  # type: ignore[return-value]
        float(s) if ok else (DEFAULT_SPACING_MM if axis == 0 else fallback)
        for axis, (s, ok) in enumerate(zip(volume.spacing, known, strict=True))
    )


def is_projection(volume: ImageVolume) -> bool:
    """True for radiographs and other 2D projection images (``ImageVolume.is_projection``)."""
    return volume.is_projection


def is_inverted(volume: ImageVolume) -> bool:
    """True when bright means less attenuation (MONOCHROME1), as far as the attributes say."""
    return any(str(value).upper() == "MONOCHROME1" for value in volume.attributes.values())


def _largest_components(mask: np.ndarray, keep: int) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= keep:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    best = np.argsort(sizes)[::-1][:keep] + 1
    return np.isin(labels, best)


def ct_lung_mask(hu_slice: np.ndarray) -> np.ndarray:
    """Aerated lung in one CT slice: HU in ``LUNG_HU`` inside the body outline."""
    smooth = cv2.GaussianBlur(hu_slice.astype(np.float32), (0, 0), 1.0)
    body = _largest_components(smooth > -500.0, 1)
    body = ndimage.binary_fill_holes(body)
    lung = body & (smooth >= LUNG_HU[0]) & (smooth <= LUNG_HU[1])
    lung = ndimage.binary_opening(lung, iterations=2)
    return _largest_components(lung, 2)


def radiograph_lung_mask(image: np.ndarray, inverted: bool) -> np.ndarray:
    """Lung fields of a chest radiograph, roughly: darker-than-tissue areas near the centre.

    A heuristic, not a segmentation: inside the central box it keeps the pixels between the
    5th and 40th intensity percentile (air outside the body is darker still) and the two
    largest connected regions.
    """
    rows, cols = image.shape
    scale = min(1.0, 256.0 / max(rows, cols))
    small = cv2.resize(
        image.astype(np.float32), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
    )
    small = cv2.GaussianBlur(-small if inverted else small, (0, 0), 2.0)
    r, c = small.shape
    box = np.zeros_like(small, dtype=bool)
    box[int(0.12 * r) : int(0.85 * r), int(0.08 * c) : int(0.92 * c)] = True
    low, high = np.percentile(small[box], [5, 40])
    lung = box & (small >= low) & (small <= high)
    lung = _largest_components(ndimage.binary_opening(lung, iterations=2), 2)
    return cv2.resize(lung.astype(np.uint8), (cols, rows), interpolation=cv2.INTER_NEAREST) > 0


def foreground_mask(image: np.ndarray) -> np.ndarray:
    """Largest bright object (brain, body) by Otsu's threshold, holes filled."""
    smooth = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.5)
    lo, hi = np.percentile(smooth, [1, 99.5])
    if hi <= lo:
        return np.zeros(image.shape, dtype=bool)
    scaled = np.clip((smooth - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
    _, binary = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    fg = _largest_components(binary > 0, 1)
    return ndimage.binary_fill_holes(fg)


def plausible_mask(volume: ImageVolume, slice_index: int) -> np.ndarray:
    """Where a lesion or patch may go in one slice: lung (CT, X-ray), foreground otherwise."""
    image = volume.pixels[slice_index]
    if volume.modality == "CT":
        return ct_lung_mask(image)
    if is_projection(volume):
        return radiograph_lung_mask(image, is_inverted(volume))
    return foreground_mask(image)


def sample_location(
    volume: ImageVolume,
    rng: np.random.Generator,
    radius_px: float,
    half_slices: int = 0,
    tries: int = 6,
) -> tuple[tuple[int, int, int], str]:
    """Draw a ``(slice, row, col)`` centre at least ``radius_px`` inside plausible anatomy.

    Slices are drawn at random from the central 80% (and at least ``half_slices`` from the
    ends when there is room); each try
    looks at one slice only, so this stays fast on 500-slice series. When no slice has room,
    the requirement is halved, then the body (foreground) is used (a CT slice below the lungs),
    and at last the image centre.

    Returns:
        The centre and how it was found: ``"anatomy"``, ``"anatomy-tight"``, ``"body"`` or
        ``"centre"``.
    """
    n_slices, rows, cols = volume.shape
    lo, hi = (half_slices, n_slices - half_slices) if n_slices > 2 * half_slices else (0, n_slices)
    if hi - lo >= 10:  # the first and last tenth of a series hold little anatomy (apices, vertex)
        lo, hi = lo + (hi - lo) // 10, hi - (hi - lo) // 10
    stages = (
        ("anatomy", radius_px, plausible_mask),
        ("anatomy-tight", radius_px / 2.0, plausible_mask),
        ("body", radius_px, lambda v, z: foreground_mask(v.pixels[z])),  # e.g. CT without lung
    )
    for placement, need, find in stages:
        for _ in range(tries if placement != "body" else 2):
            z = int(rng.integers(lo, hi))
            mask = find(volume, z)
            if not mask.any():
                continue
            inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
            margin = min(rows, cols) // 16
            inside[:margin] = inside[-margin:] = 0
            inside[:, :margin] = inside[:, -margin:] = 0
            ys, xs = np.nonzero(inside >= max(need, 1.0))
            if len(ys):
                pick = int(rng.integers(len(ys)))
                return (z, int(ys[pick]), int(xs[pick])), placement
    z = int(rng.integers(lo, hi))
    return (z, rows // 2, cols // 2), "centre"


def clip_box(
    centre: tuple[int, int, int], half: tuple[int, int, int], shape: tuple[int, int, int]
) -> tuple[slice, slice, slice]:
    """The box ``centre ± half`` clipped to ``shape``."""
    return tuple(  # type: ignore[return-value]
        slice(max(c - h, 0), min(c + h + 1, n)) for c, h, n in zip(centre, half, shape, strict=True)
    )


def value_range(volume: ImageVolume) -> tuple[float, float]:
    """Range pixels must stay in: the CT HU range, or what ``bits_stored`` allows."""
    if volume.modality == "CT":  # -3024 and the like mark pixels outside the field of view
        return min(-1024.0, float(volume.pixels.min())), 3071.0
    low = float(min(volume.pixels.min(), 0.0))
    if volume.bits_stored:
        return low, float(max(2**volume.bits_stored - 1, volume.pixels.max()))
    return low, float(volume.pixels.max()) * 1.5 + 1.0


def on_value_grid(reference: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """``pixels`` rounded and clipped as writing them into ``reference``'s file would do.

    When the reference holds only integers (CT in HU with slope 1, stored radiograph values), the
    result is rounded to integers; it is always clipped to the reference's own value range.
    """
    out = np.clip(pixels, float(reference.min()), float(reference.max()))
    sample = reference.ravel()[:: max(1, reference.size // 65536)]
    if np.array_equal(sample, np.rint(sample)):
        out = np.rint(out)
    return out.astype(np.float32, copy=False)
