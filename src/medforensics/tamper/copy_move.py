"""Copy-move: a region of the image pasted elsewhere in the same image (label ``copy-move``).

The source region keeps its own authentic noise, so no noise is synthesised: the duplicated
texture is exactly the evidence a copy-move detector should find. The patch may be flipped or
turned by 180 degrees, shifted in mean to its new surroundings, and is feathered into them.
"""

from __future__ import annotations

import math

import numpy as np

from medforensics.io.types import ImageVolume
from medforensics.tamper.anatomy import sample_location
from medforensics.tamper.base import Attack, GroundTruth, Params, TamperResult
from medforensics.tamper.patches import box_region, keep_inside, region_box, sample_region
from medforensics.tamper.registry import register_attack
from medforensics.tamper.texture import feather

RADIUS_MM = (3.0, 25.0)


def orient(patch: np.ndarray, flip: str, turn: bool) -> np.ndarray:
    """Flip ``patch`` (``"none"``, ``"lr"``, ``"ud"``) and turn it by 180 degrees if asked."""
    if flip == "lr":
        patch = patch[..., ::-1]
    elif flip == "ud":
        patch = patch[..., ::-1, :]
    if turn:
        patch = patch[..., ::-1, ::-1]
    return np.ascontiguousarray(patch)


def paste(
    volume: ImageVolume, params: Params, content: np.ndarray, box: tuple[slice, slice, slice]
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Feather ``content`` into a copy of the volume at ``box``; returns pixels, mask, centre."""
    region = box_region(params, box)
    alpha = feather(region, float(params["feather_px"]))
    background = volume.pixels[box]
    if params.get("match_mean"):
        ring = region ^ np.ones_like(region)
        if ring.any():
            content = content + (float(background[ring].mean()) - float(content[~ring].mean()))
    pixels = volume.pixels.copy()
    pixels[box] = np.where(alpha > 0, background * (1 - alpha) + content * alpha, background)
    mask = np.zeros(volume.shape, dtype=bool)
    mask[box] = alpha > 0
    centre = (
        (box[0].start + box[0].stop - 1) // 2,
        int(params["centre"][1]),
        int(params["centre"][2]),
    )
    if not mask[centre]:
        hits = np.argwhere(mask)
        centre = tuple(int(v) for v in hits[len(hits) // 2])  # type: ignore[assignment]
    return pixels.astype(np.float32), mask, centre


@register_attack
class CopyMove(Attack):
    """Duplicate a region (2D, or a slab of up to 5 slices in a series) within the image."""

    name = "copy-move"
    label = "copy-move"
    modalities = ()

    def sample_params(self, volume: ImageVolume, rng: np.random.Generator) -> Params:
        params = sample_region(volume, rng, RADIUS_MM)
        ry, rx = params["radius_px"]
        half = (params["slices"] // 2, math.ceil(ry) + 1, math.ceil(rx) + 1)
        target = np.asarray(params["centre"])
        source = target
        for _ in range(10):
            found, _ = sample_location(volume, rng, max(ry, rx), params["slices"] // 2)
            source = np.asarray(keep_inside(found, half, volume.shape))
            if np.hypot(*(source[1:] - target[1:])) > 2 * max(ry, rx) + 2 or source[0] != target[0]:
                break
        else:  # no room for a separate source: take the mirror position across the image
            source = np.asarray(
                keep_inside(
                    (target[0], volume.shape[1] - target[1], volume.shape[2] - target[2]),
                    half,
                    volume.shape,
                )
            )
        params.update(
            source=[int(v) for v in source],
            feather_px=round(float(rng.uniform(0.0, 6.0)), 2),
            flip=("none", "lr", "ud")[int(rng.integers(3))],
            turn=bool(rng.random() < 0.3),
            match_mean=bool(rng.random() < 0.5),
        )
        return params

    def apply(self, volume: ImageVolume, params: Params, rng: np.random.Generator) -> TamperResult:
        box = region_box(params, volume.shape)
        shift = [int(s) - int(t) for s, t in zip(params["source"], params["centre"], strict=True)]
        source_box = tuple(slice(b.start + d, b.stop + d) for b, d in zip(box, shift, strict=True))
        for b, n in zip(source_box, volume.shape, strict=True):
            if b.start < 0 or b.stop > n:
                raise ValueError(
                    f"copy-move source {params['source']} is too close to the image edge"
                )
        content = orient(
            volume.pixels[source_box].astype(np.float64), params["flip"], params["turn"]
        )
        pixels, mask, centre = paste(volume, params, content, box)
        truth = GroundTruth(self.name, self.label, dict(params), centre, mask)
        return TamperResult(pixels=pixels, truth=truth)
