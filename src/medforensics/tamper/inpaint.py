"""Classical in-painting: a region erased and filled from its border (label ``inpaint``).

Methods: OpenCV's Telea (fast marching) and Navier-Stokes, and scikit-image's biharmonic
fill, each slice by slice. These fills are smooth, which is what naive attackers leave behind;
with ``add_noise`` the fill gets noise with the surroundings' NPS instead (see
``texture.noise_for_region``), the variant a careful attacker would use.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.restoration import inpaint_biharmonic

from medforensics.io.types import ImageVolume
from medforensics.tamper.base import Attack, GroundTruth, Params, TamperResult
from medforensics.tamper.patches import box_region, region_box, sample_region
from medforensics.tamper.registry import register_attack
from medforensics.tamper.texture import blend_with_noise, feather, noise_for_region

METHODS = ("telea", "navier-stokes", "biharmonic")
RADIUS_MM = (3.0, 20.0)
#: pixels of surroundings handed to the in-painting routines
CONTEXT_PX = 12


#: holes wider than this are filled biharmonically at a lower resolution (the fill is smooth)
BIHARMONIC_MAX_PX = 48


def fill_plane(plane: np.ndarray, hole: np.ndarray, method: str, radius: float = 5.0) -> np.ndarray:
    """Fill ``hole`` (bool) in a 2D float image with one of ``METHODS``."""
    if method == "biharmonic":
        ys, xs = np.nonzero(hole)
        extent = max(np.ptp(ys), np.ptp(xs)) + 1 if len(ys) else 0
        if extent <= BIHARMONIC_MAX_PX:
            return inpaint_biharmonic(plane.astype(np.float64), hole).astype(np.float32)
        scale = BIHARMONIC_MAX_PX / extent
        small = cv2.resize(
            plane.astype(np.float32), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
        )
        small_hole_u8 = cv2.resize(
            hole.astype(np.uint8), (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST
        )
        small_hole = cv2.dilate(small_hole_u8, np.ones((3, 3), np.uint8)) > 0
        filled = inpaint_biharmonic(small.astype(np.float64), small_hole).astype(np.float32)
        up = cv2.resize(filled, (plane.shape[1], plane.shape[0]), interpolation=cv2.INTER_CUBIC)
        return np.where(hole, up, plane).astype(np.float32)
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    return cv2.inpaint(plane.astype(np.float32), hole.astype(np.uint8), float(radius), flag)


def fill_box(
    pixels: np.ndarray,
    box: tuple[slice, slice, slice],
    hole: np.ndarray,
    method: str,
    radius: float,
) -> np.ndarray:
    """Fill ``hole`` (shaped like ``pixels[box]``) slice by slice, using a margin of context."""
    zs, ys, xs = box
    rows, cols = pixels.shape[1:]
    y0, y1 = max(ys.start - CONTEXT_PX, 0), min(ys.stop + CONTEXT_PX, rows)
    x0, x1 = max(xs.start - CONTEXT_PX, 0), min(xs.stop + CONTEXT_PX, cols)
    inner = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
    filled = np.empty(hole.shape, dtype=np.float32)
    for k, z in enumerate(range(zs.start, zs.stop)):
        big_hole = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        big_hole[inner] = hole[k]
        plane = fill_plane(pixels[z, y0:y1, x0:x1], big_hole, method, radius)
        filled[k] = plane[inner]
    return filled


@register_attack
class ClassicalInpaint(Attack):
    """Erase a region and fill it with Telea, Navier-Stokes or biharmonic in-painting."""

    name = "inpaint"
    label = "inpaint"
    modalities = ()

    def sample_params(self, volume: ImageVolume, rng: np.random.Generator) -> Params:
        params = sample_region(volume, rng, RADIUS_MM)
        params.update(
            method=METHODS[int(rng.integers(len(METHODS)))],
            inpaint_radius=round(float(rng.uniform(3.0, 8.0)), 2),
            feather_px=round(float(rng.uniform(0.0, 3.0)), 2),
            add_noise=bool(rng.random() < 0.5),
        )
        return params

    def apply(self, volume: ImageVolume, params: Params, rng: np.random.Generator) -> TamperResult:
        box = region_box(params, volume.shape)
        hole = box_region(params, box)
        filled = fill_box(volume.pixels, box, hole, params["method"], params["inpaint_radius"])
        background = volume.pixels[box]
        alpha = feather(hole, float(params["feather_px"]))
        stats: dict[str, float] = {}
        if params["add_noise"]:
            noise, model = noise_for_region(
                volume.pixels, box, rng, exclude=_full(volume, box, hole)
            )
            patch = blend_with_noise(background, filled, alpha, noise)
            stats = model.describe()
        else:
            patch = background * (1 - alpha) + filled * alpha
        pixels = volume.pixels.copy()
        pixels[box] = np.where(alpha > 0, patch, background)
        mask = np.zeros(volume.shape, dtype=bool)
        mask[box] = alpha > 0
        centre = _centre(mask, params)
        truth = GroundTruth(self.name, self.label, {**params, "matched": stats}, centre, mask)
        return TamperResult(pixels=pixels.astype(np.float32), truth=truth)


def _full(volume: ImageVolume, box: tuple[slice, slice, slice], region: np.ndarray) -> np.ndarray:
    full = np.zeros(volume.shape, dtype=bool)
    full[box] = region
    return full


def _centre(mask: np.ndarray, params: Params) -> tuple[int, int, int]:
    zs = np.flatnonzero(mask.any(axis=(1, 2)))
    centre = (int(zs[len(zs) // 2]), int(params["centre"][1]), int(params["centre"][2]))
    if mask[centre]:
        return centre
    hits = np.argwhere(mask)
    z, y, x = (int(v) for v in hits[len(hits) // 2])
    return z, y, x
