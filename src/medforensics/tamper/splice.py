"""Splice: a region cut from another image pasted into this one (label ``splice``).

The donor is an ``ImageVolume`` given to the constructor (``create_attack("splice",
donor=other)``); without one, a chest phantom drawn from ``donor_seed`` is used, so the attack
is self-contained. The donor region is resampled to the recipient's pixel spacing, its mean and
spread matched to the recipient's surroundings (what an attacker's histogram matching does),
and it is feathered in. With ``match_noise`` the donor's own high-frequency noise is replaced
by noise with the recipient's NPS.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom, radiograph_phantom
from medforensics.tamper.anatomy import is_projection, sample_location, spacing_mm
from medforensics.tamper.base import Attack, GroundTruth, Params, TamperResult
from medforensics.tamper.copy_move import orient, paste
from medforensics.tamper.patches import box_region, region_box, sample_region
from medforensics.tamper.registry import register_attack
from medforensics.tamper.texture import STRUCTURE_SIGMA, highpass, noise_for_region

RADIUS_MM = (4.0, 25.0)


def phantom_donor(volume: ImageVolume, seed: int) -> ImageVolume:
    """A phantom of the recipient's kind (chest CT or radiograph) to cut donor regions from."""
    rng = np.random.default_rng(seed)
    if is_projection(volume):
        pixels = radiograph_phantom(512, rng)
        spacing = (math.nan, 0.8, 0.8)
    else:
        pixels = chest_ct_phantom(max(min(volume.shape[0], 6), 1), 256, rng)
        spacing = (2.5, 1.4, 1.4)
    return ImageVolume(
        input=f"phantom:{seed}",
        kind="image",
        modality=volume.modality,
        pixels=pixels,
        spacing=spacing,
    )


@register_attack
class Splice(Attack):
    """Paste a region from a donor image (another scan, or a phantom) into the image."""

    name = "splice"
    label = "splice"
    modalities = ()

    def __init__(self, donor: ImageVolume | None = None) -> None:
        self.donor = donor

    def _donor(self, volume: ImageVolume, params: Params) -> ImageVolume:
        if params["donor"] == "given":
            if self.donor is None:
                raise ValueError(
                    "these splice params need the donor image: create_attack('splice', donor=...)"
                )
            return self.donor
        return phantom_donor(volume, int(params["donor_seed"]))

    def sample_params(self, volume: ImageVolume, rng: np.random.Generator) -> Params:
        params = sample_region(volume, rng, RADIUS_MM)
        params.update(
            donor="given" if self.donor is not None else "phantom",
            donor_input=self.donor.input if self.donor is not None else None,
            donor_seed=int(rng.integers(2**31)),
            feather_px=round(float(rng.uniform(1.0, 6.0)), 2),
            flip=("none", "lr", "ud")[int(rng.integers(3))],
            turn=bool(rng.random() < 0.3),
            match_noise=bool(rng.random() < 0.8),
        )
        donor = self._donor(volume, params)
        scale = [d / v for d, v in zip(spacing_mm(donor)[1:], spacing_mm(volume)[1:], strict=True)]
        ry, rx = (r / s for r, s in zip(params["radius_px"], scale, strict=True))
        centre, _ = sample_location(donor, rng, max(ry, rx), params["slices"] // 2)
        params["donor_centre"] = list(centre)
        return params

    def apply(self, volume: ImageVolume, params: Params, rng: np.random.Generator) -> TamperResult:
        donor = self._donor(volume, params)
        box = region_box(params, volume.shape)
        rows, cols = box[1].stop - box[1].start, box[2].stop - box[2].start
        scale = [d / v for d, v in zip(spacing_mm(donor)[1:], spacing_mm(volume)[1:], strict=True)]
        need_y, need_x = math.ceil(rows / scale[0] / 2) + 1, math.ceil(cols / scale[1] / 2) + 1
        dz, dy, dx = (int(v) for v in params["donor_centre"])
        padded = np.pad(donor.pixels, ((0, 0), (need_y, need_y), (need_x, need_x)), mode="reflect")
        slices = box[0].stop - box[0].start
        z0 = min(max(dz - slices // 2, 0), max(donor.shape[0] - slices, 0))
        content = np.empty((slices, rows, cols), dtype=np.float64)
        for k in range(slices):
            plane = padded[
                min(z0 + k, donor.shape[0] - 1), dy : dy + 2 * need_y, dx : dx + 2 * need_x
            ]
            resized = cv2.resize(
                plane.astype(np.float32),
                None,
                fx=scale[1],
                fy=scale[0],
                interpolation=cv2.INTER_LINEAR,
            )
            top = max((resized.shape[0] - rows) // 2, 0)
            left = max((resized.shape[1] - cols) // 2, 0)
            crop = resized[top : top + rows, left : left + cols]
            content[k] = np.pad(
                crop, ((0, rows - crop.shape[0]), (0, cols - crop.shape[1])), mode="edge"
            )
        content = orient(content, params["flip"], params["turn"])
        region = box_region(params, box)
        background = volume.pixels[box].astype(np.float64)
        ring = ~region if (~region).any() else np.ones_like(region)
        spread = background[ring].std() / max(float(content[region].std()), 1e-6)
        content = (content - content[region].mean()) * min(spread, 3.0) + background[ring].mean()
        if params["match_noise"]:
            noise, model = noise_for_region(volume.pixels, box, rng)
            smooth = content - np.stack([highpass(plane, STRUCTURE_SIGMA) for plane in content])
            content = smooth + noise
            params = {**params, "matched": model.describe()}
        pixels, mask, centre = paste(volume, {**params, "match_mean": False}, content, box)
        truth = GroundTruth(self.name, self.label, dict(params), centre, mask)
        return TamperResult(pixels=pixels, truth=truth)
