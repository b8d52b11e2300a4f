"""CT-GAN's whole tampering pipeline around an edit: re-grid the scan, edit, re-grid back, touch up.

CT-GAN's published tool (Mirsky et al. 2019) does more to a scan than its generator does: it zooms
the **whole** scan to 1 mm voxels, edits there, zooms the whole scan back, and then "touches up"
a 64-voxel cube around each edit by mixing the result with the original scan. What a detector
meets is that whole pipeline, so the simulator offers it around its own edits:

* ``ctgan-inject``: ``tamper.regrid.round_trip``, then the ``inject`` attack on the re-gridded
  scan, then CT-GAN's injection touch-up (``touch_up_injection``);
* ``ctgan-remove``: the same around ``remove``, with the removal touch-up.

Differences from CT-GAN, said plainly: the edit itself is our attack on the native grid after
the round trip, not a GAN on the 1 mm grid (``gan-inject`` / ``gan-remove`` are the learned
edits, on the native grid); the touch-up leaves out CT-GAN's added noise; pixels are HU, where
CT-GAN's code applies its HU thresholds to stored values. The mask is the edit's footprint, as for
laundering: the round trip changed every pixel, the lesion is where the evidence is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import ClassVar

import numpy as np

from medforensics.io.types import ImageVolume
from medforensics.tamper.base import Attack, AttackError, GroundTruth, Params, TamperResult
from medforensics.tamper.registry import create_attack, register_attack
from medforensics.tamper.regrid import round_trip, touch_up_injection, touch_up_removal

#: CT-GAN's working grid (mm) and touch-up cube (voxels)
GRID_MM = 1.0
TOUCH_UP_SIZE = 64

TouchUp = Callable[[np.ndarray, np.ndarray, tuple[int, int, int], int], np.ndarray]
#: CT-GAN's two touch-ups, by name (recorded in the params)
TOUCH_UPS: dict[str, TouchUp] = {"injection": touch_up_injection, "removal": touch_up_removal}


class _Pipeline(Attack):
    """An inner attack wrapped in CT-GAN's re-gridding and touch-up."""

    inner: ClassVar[str] = ""
    touch_up: ClassVar[str] = ""
    modalities = ("CT",)

    def sample_params(self, volume: ImageVolume, rng: np.random.Generator) -> Params:
        return {
            "inner": self.inner,
            "inner_params": create_attack(self.inner).sample_params(volume, rng),
            "grid_mm": GRID_MM,
            "touch_up": self.touch_up,
            "touch_up_size": TOUCH_UP_SIZE,
        }

    def apply(self, volume: ImageVolume, params: Params, rng: np.random.Generator) -> TamperResult:
        regridded = round_trip(volume.pixels, volume.spacing, float(params["grid_mm"]))
        inner = create_attack(str(params["inner"]))
        result = inner.apply(replace(volume, pixels=regridded), params["inner_params"], rng)
        centre = result.truth.centre
        if centre is None:
            raise AttackError(f"{self.name}: the {inner.name!r} edit gave no centre to touch up")
        touch = TOUCH_UPS[str(params["touch_up"])]
        pixels = touch(volume.pixels, result.pixels, centre, int(params["touch_up_size"]))
        truth = GroundTruth(
            attack=self.name,
            label=result.truth.label,
            params={**params, "inner_params": result.truth.params},
            centre=centre,
            mask=result.truth.mask,
        )
        return TamperResult(pixels=pixels.astype(np.float32), truth=truth)


@register_attack
class CtganInjection(_Pipeline):
    """``inject`` inside CT-GAN's pipeline (whole-scan 1 mm round trip, injection touch-up)."""

    name = "ctgan-inject"
    label = "FM"
    inner = "inject"
    touch_up = "injection"


@register_attack
class CtganRemoval(_Pipeline):
    """``remove`` inside CT-GAN's pipeline (whole-scan 1 mm round trip, removal touch-up)."""

    name = "ctgan-remove"
    label = "FB"
    inner = "remove"
    touch_up = "removal"
