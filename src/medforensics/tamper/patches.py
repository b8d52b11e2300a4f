"""Region shapes and placement shared by copy-move, splice, in-painting and removal."""

from __future__ import annotations

import math

import numpy as np

from medforensics.io.types import ImageVolume
from medforensics.tamper.anatomy import sample_location, spacing_mm
from medforensics.tamper.base import Params

SHAPES = ("ellipse", "blob", "rect")


def region_mask(
    size: tuple[int, int], radii: tuple[float, float], shape: str, seed: int
) -> np.ndarray:
    """A bool ``size`` array holding a centred ellipse, irregular blob or rounded rectangle.

    Args:
        size: ``(rows, cols)`` of the array.
        radii: ``(ry, rx)`` half-extents in pixels.
        shape: one of ``SHAPES``.
        seed: seeds the blob outline (a few random angular harmonics).
    """
    rows, cols = size
    yy, xx = np.mgrid[:rows, :cols].astype(np.float64)
    dy = (yy - (rows - 1) / 2.0) / max(radii[0], 0.5)
    dx = (xx - (cols - 1) / 2.0) / max(radii[1], 0.5)
    if shape == "rect":
        return (
            np.maximum(np.abs(dy), np.abs(dx)) ** 6 + np.minimum(np.abs(dy), np.abs(dx)) ** 6 <= 1.0
        )
    rho = np.sqrt(dy**2 + dx**2)
    if shape == "blob":
        rng = np.random.default_rng(seed)
        angle = np.arctan2(dy, dx)
        wobble = sum(
            rng.uniform(0.04, 0.14) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
            for k in (2, 3, 5)
        )
        rho = rho / (1.0 + wobble)
    return rho <= 1.0


def sample_region(
    volume: ImageVolume,
    rng: np.random.Generator,
    radius_mm: tuple[float, float],
    max_slices: int = 5,
) -> Params:
    """Draw a region size (in pixels), its slice count, shape, and a centre in plausible anatomy.

    Args:
        volume: the image the region goes into.
        rng: parameter generator.
        radius_mm: range of the region radius in millimetres.
        max_slices: most slices a region spans in a series (always 1 for 2D images).
    """
    spacing = spacing_mm(volume)
    rows, cols = volume.shape[1:]
    radius = float(np.exp(rng.uniform(math.log(radius_mm[0]), math.log(radius_mm[1]))))
    ry = radius / spacing[1] * float(rng.uniform(0.7, 1.0))
    rx = radius / spacing[2] * float(rng.uniform(0.7, 1.0))
    limit = min(rows, cols) / 5.0  # keep a region well inside small images
    ry, rx = min(max(ry, 2.0), limit), min(max(rx, 2.0), limit)
    slices = int(rng.integers(1, max_slices + 1)) if volume.is_volume else 1
    slices = min(slices, volume.shape[0])
    centre, placement = sample_location(volume, rng, max(ry, rx), slices // 2)
    return {
        "centre": list(
            keep_inside(centre, (slices // 2, math.ceil(ry), math.ceil(rx)), volume.shape)
        ),
        "placement": placement,
        "radius_px": [round(ry, 2), round(rx, 2)],
        "slices": slices,
        "shape": SHAPES[int(rng.integers(len(SHAPES)))],
        "shape_seed": int(rng.integers(2**31)),
    }


def keep_inside(
    centre: tuple[int, ...] | list[int], half: tuple[int, int, int], shape: tuple[int, int, int]
) -> tuple[int, int, int]:
    """Move ``centre`` so that ``centre ± half`` (plus one pixel) fits in ``shape``."""
    moved = []
    for c, h, n in zip(centre, half, shape, strict=True):
        low, high = h + (1 if n > 2 * h + 2 else 0), n - h - (2 if n > 2 * h + 2 else 1)
        moved.append(int(min(max(int(c), low), max(high, low))))
    return moved[0], moved[1], moved[2]


def region_box(params: Params, shape: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    """The box a region with ``centre``, ``radius_px`` and ``slices`` occupies, clipped."""
    z, y, x = (int(v) for v in params["centre"])
    ry, rx = (math.ceil(r) + 1 for r in params["radius_px"])
    slices = int(params.get("slices", 1))
    z0 = min(max(z - slices // 2, 0), max(shape[0] - slices, 0))
    return (
        slice(z0, min(z0 + slices, shape[0])),
        slice(max(y - ry, 0), min(y + ry + 1, shape[1])),
        slice(max(x - rx, 0), min(x + rx + 1, shape[2])),
    )


def box_region(params: Params, box: tuple[slice, slice, slice]) -> np.ndarray:
    """The region's bool mask inside ``box``, the same shape on every slice."""
    zs, ys, xs = box
    size = (ys.stop - ys.start, xs.stop - xs.start)
    centre_y = int(params["centre"][1]) - ys.start
    centre_x = int(params["centre"][2]) - xs.start
    # draw on a grid centred on the region, then crop to the (possibly clipped) box
    ry, rx = (math.ceil(r) + 1 for r in params["radius_px"])
    full = region_mask(
        (2 * ry + 1, 2 * rx + 1), tuple(params["radius_px"]), params["shape"], params["shape_seed"]
    )
    plane = np.zeros(size, dtype=bool)
    top, left = centre_y - ry, centre_x - rx
    src_y0, src_x0 = max(-top, 0), max(-left, 0)
    dst_y0, dst_x0 = max(top, 0), max(left, 0)
    h = min(full.shape[0] - src_y0, size[0] - dst_y0)
    w = min(full.shape[1] - src_x0, size[1] - dst_x0)
    if h > 0 and w > 0:
        plane[dst_y0 : dst_y0 + h, dst_x0 : dst_x0 + w] = full[
            src_y0 : src_y0 + h, src_x0 : src_x0 + w
        ]
    return np.repeat(plane[None], zs.stop - zs.start, axis=0)
