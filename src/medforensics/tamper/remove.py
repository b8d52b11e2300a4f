"""Lesion removal: a finding erased and replaced by plausible parenchyma (label ``FB``).

The region is given as a box (``params["box"]``, e.g. from a tumour annotation) or sampled in
plausible anatomy. Each slice is filled from the lightly smoothed surroundings (biharmonic or
Telea), the fills are then blended across neighbouring slices so the result is consistent in 3D
(no slice-to-slice jumps a coronal view would show), and noise with the NPS and slice
correlation of the surrounding parenchyma is added so no smooth patch is left behind.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from medforensics.io.types import ImageVolume
from medforensics.tamper.anatomy import sample_location, spacing_mm
from medforensics.tamper.base import Attack, GroundTruth, Params, TamperResult
from medforensics.tamper.inpaint import CONTEXT_PX, fill_box, fill_plane
from medforensics.tamper.patches import region_mask
from medforensics.tamper.registry import register_attack
from medforensics.tamper.texture import blend_with_noise, feather, noise_for_region

RADIUS_MM = (3.0, 15.0)
#: CT: above this (HU) is soft tissue (chest wall, mediastinum, tumour), below it aerated lung
TISSUE_HU = -500.0
#: soft tissue in a connected piece smaller than this (px) is a vessel, not a wall to continue
WALL_MIN_PX = 200
#: a ring around the hole with at least this share of both lung and wall is "mixed"
MIXED_SHARE = 0.15
#: width (px) of the ring of context that decides whether a site is mixed
RING_PX = 12
#: slope of the lung-to-wall blend at the continued outline (the in-painted indicator is smooth)
EDGE_SHARPNESS = 8.0


def tissue_aware_fill(
    context: np.ndarray, box: tuple[slice, slice, slice], hole: np.ndarray, method: str
) -> tuple[np.ndarray | None, list[int]]:
    """Fill a CT hole next to the chest wall or mediastinum as lung *and* wall, not a blend.

    Per slice, where the ring around the hole holds both aerated lung and a wall (soft tissue
    in pieces too large to be vessels), the wall's outline is continued into the hole (the
    tissue indicator is in-painted and thresholded, softened over a few pixels), lung pixels are
    filled from the lung around only and wall pixels from the wall around only. A plain fill
    would smear wall values into the lung: the grey patch real lesions at the pleura leave.

    Returns:
        The fill (shaped like ``hole``) or None when no slice is mixed, and the mixed slices.
    """
    zs, ys, xs = box
    rows, cols = context.shape[1:]
    y0, y1 = max(ys.start - CONTEXT_PX, 0), min(ys.stop + CONTEXT_PX, rows)
    x0, x1 = max(xs.start - CONTEXT_PX, 0), min(xs.stop + CONTEXT_PX, cols)
    inner = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
    filled = np.empty(hole.shape, dtype=np.float32)
    mixed: list[int] = []
    for k, z in enumerate(range(zs.start, zs.stop)):
        plane = context[z, y0:y1, x0:x1].astype(np.float32)
        big_hole = np.zeros(plane.shape, dtype=bool)
        big_hole[inner] = hole[k]
        dense = plane > TISSUE_HU
        _, labels, stats, _ = cv2.connectedComponentsWithStats(
            (dense & ~big_hole).astype(np.uint8), connectivity=8
        )
        large = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= WALL_MIN_PX)
        wall = np.isin(labels, large[large > 0])
        lung = ~dense & ~big_hole
        distance = cv2.distanceTransform((~big_hole).astype(np.uint8), cv2.DIST_L2, 5)
        ring = ~big_hole & (distance <= RING_PX)
        share_wall, share_lung = wall[ring].mean(), lung[ring].mean()
        if not big_hole.any() or min(share_wall, share_lung) < MIXED_SHARE:
            filled[k] = fill_plane(plane, big_hole, method)[inner]
            continue
        mixed.append(z)
        # the outline is continued biharmonically whatever the value method: smooth and
        # symmetric (Telea's fast marching leaves a speckled 0/1 pattern in an indicator)
        indicator = fill_plane(wall.astype(np.float32), big_hole, "biharmonic")
        weight = np.clip((indicator - 0.5) * EDGE_SHARPNESS + 0.5, 0.0, 1.0)
        lung_value = float(np.median(plane[ring & lung]))
        wall_value = float(np.median(plane[ring & wall]))
        # each class is filled from its own side only (vessels count as lung here)
        lung_fill = fill_plane(np.where(dense, lung_value, plane), big_hole, method)
        wall_fill = fill_plane(np.where(dense, plane, wall_value), big_hole, method)
        filled[k] = (lung_fill * (1.0 - weight) + wall_fill * weight)[inner]
    return (filled if mixed else None), mixed


def _hole(params: Params, box: tuple[slice, slice, slice]) -> np.ndarray:
    """Ellipse (or box) inscribed in the lesion box grown by ``margin_px``, on every slice."""
    zs, ys, xs = box
    margin = float(params["margin_px"])
    inner_y, inner_x = params["box"][3] - params["box"][2], params["box"][5] - params["box"][4]
    radii = ((inner_y / 2.0 + margin), (inner_x / 2.0 + margin))
    if params["shape"] == "ellipse":
        radii = (radii[0] * math.sqrt(2.0) * 0.85, radii[1] * math.sqrt(2.0) * 0.85)
    plane = region_mask((ys.stop - ys.start, xs.stop - xs.start), radii, params["shape"], 0)
    return np.repeat(plane[None], zs.stop - zs.start, axis=0)


@register_attack
class LesionRemoval(Attack):
    """Remove a lesion given as a box ``[z0, z1, y0, y1, x0, x1]`` (half-open), or a sampled one."""

    name = "remove"
    label = "FB"
    modalities = ()

    def sample_params(self, volume: ImageVolume, rng: np.random.Generator) -> Params:
        spacing = spacing_mm(volume)
        radius = float(np.exp(rng.uniform(*np.log(RADIUS_MM))))
        ry, rx = radius / spacing[1], radius / spacing[2]
        half_z = (
            min(math.ceil(radius / spacing[0]), volume.shape[0] // 2) if volume.is_volume else 0
        )
        (z, y, x), placement = sample_location(volume, rng, max(ry, rx), half_z)
        return {
            "box": [
                max(z - half_z, 0),
                min(z + half_z + 1, volume.shape[0]),
                max(int(y - ry), 0),
                min(int(y + ry) + 1, volume.shape[1]),
                max(int(x - rx), 0),
                min(int(x + rx) + 1, volume.shape[2]),
            ],
            "source": "sampled",
            "placement": placement,
            "margin_px": int(rng.integers(2, 6)),
            "shape": ("ellipse", "rect")[int(rng.random() < 0.3)],
            "method": ("biharmonic", "telea")[int(rng.random() < 0.4)],
            "smoothing_px": round(float(rng.uniform(0.8, 1.5)), 2),
            "slice_blend": round(float(rng.uniform(0.15, 0.35)), 3),
            "feather_px": round(float(rng.uniform(2.0, 5.0)), 2),
            "tissue_aware": True,
        }

    def apply(self, volume: ImageVolume, params: Params, rng: np.random.Generator) -> TamperResult:
        z0, z1, y0, y1, x0, x1 = (int(v) for v in params["box"])
        if not (0 <= z0 < z1 <= volume.shape[0] and 0 <= y0 < y1 and 0 <= x0 < x1):
            raise ValueError(
                f"removal box {params['box']} is empty or outside the {volume.shape} image"
            )
        # room for the ellipse around the box corners, the margin and the feathering
        grow = math.ceil(0.22 * max(y1 - y0, x1 - x0)) + int(params["margin_px"]) + 2
        box = (
            slice(z0, z1),
            slice(max(y0 - grow, 0), min(y1 + grow, volume.shape[1])),
            slice(max(x0 - grow, 0), min(x1 + grow, volume.shape[2])),
        )
        hole = _hole(params, box)
        sigma = float(params["smoothing_px"])
        smooth = np.stack(
            [cv2.GaussianBlur(plane, (0, 0), sigma) for plane in volume.pixels[z0:z1]]
        )
        context = volume.pixels.copy()
        context[z0:z1] = smooth
        mixed: list[int] = []
        aware = None
        if volume.modality == "CT" and params.get("tissue_aware", True):
            aware, mixed = tissue_aware_fill(context, box, hole, params["method"])
        filled = aware if aware is not None else fill_box(context, box, hole, params["method"], 5.0)
        weight = float(params["slice_blend"])
        if filled.shape[0] > 1:  # pull each slice's fill towards its neighbours' (3D consistency)
            padded = np.concatenate([filled[:1], filled, filled[-1:]])
            filled = (1 - 2 * weight) * filled + weight * (padded[:-2] + padded[2:])
        excluded = np.zeros(volume.shape, dtype=bool)
        excluded[box] = hole
        noise, model = noise_for_region(volume.pixels, box, rng, exclude=excluded)
        alpha = feather(hole, float(params["feather_px"]))
        background = volume.pixels[box]
        patch = blend_with_noise(background, filled, alpha, noise)
        pixels = volume.pixels.copy()
        pixels[box] = np.where(alpha > 0, patch, background)
        mask = np.zeros(volume.shape, dtype=bool)
        mask[box] = alpha > 0
        centre = ((z0 + z1 - 1) // 2, (y0 + y1 - 1) // 2, (x0 + x1 - 1) // 2)
        if not mask[centre]:
            hits = np.argwhere(mask)
            centre = tuple(int(v) for v in hits[len(hits) // 2])  # type: ignore[assignment]
        recorded = {**params, "matched": model.describe(), "mixed_slices": mixed}
        truth = GroundTruth(self.name, self.label, recorded, centre, mask)
        return TamperResult(pixels=pixels.astype(np.float32), truth=truth)
