"""The demo's inputs: phantom scans, authentic and tampered, written as real files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from medforensics.samples.phantom import chest_ct_phantom, radiograph_phantom
from medforensics.samples.write import write_ct_series


def _splice(target: np.ndarray, donor: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """Paste ``donor[box]`` into a copy of ``target`` with a feathered edge."""
    spliced = target.copy()
    region = spliced[box]
    height, width = region.shape[-2:]
    ramp_y = np.minimum(np.arange(height), np.arange(height)[::-1]) / 4.0
    ramp_x = np.minimum(np.arange(width), np.arange(width)[::-1]) / 4.0
    alpha = np.clip(np.minimum.outer(ramp_y, ramp_x), 0.0, 1.0).astype(np.float32)
    spliced[box] = alpha * donor[box] + (1 - alpha) * region
    return spliced


def build_demo_inputs(out: Path, rng: np.random.Generator) -> dict[Path, str]:
    """Write two CT series and two radiographs under ``out``; return path → description."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("ct-authentic", "ct-tampered"):
        shutil.rmtree(out / stale, ignore_errors=True)
    ct = chest_ct_phantom(n_slices=24, size=256, rng=rng)
    # the donor was reconstructed with a smoother kernel: lower, differently shaped noise
    donor = chest_ct_phantom(n_slices=24, size=256, rng=rng, noise_sigma=6.0, kernel_cutoff=0.2)
    box = (slice(8, 16), slice(96, 160), slice(60, 124))
    write_ct_series(ct, out / "ct-authentic", patient_id="DEMO-CT-1")
    write_ct_series(_splice(ct, donor, box), out / "ct-tampered", patient_id="DEMO-CT-1")

    xray = radiograph_phantom(size=512, rng=rng)[0]
    smooth = radiograph_phantom(size=512, rng=rng, noise_sigma=0.5)[0]
    tampered = _splice(xray, smooth, (slice(200, 300), slice(120, 220)))
    for name, image in (("xray-authentic.png", xray), ("xray-tampered.png", tampered)):
        Image.fromarray(np.rint(image * 16).clip(0, 65535).astype(np.uint16)).save(out / name)
    return {
        out / "ct-authentic": "phantom chest CT, 24 slices, untouched",
        out / "ct-tampered": "same CT with a region spliced in from a smoother reconstruction",
        out / "xray-authentic.png": "phantom chest radiograph, 16-bit PNG, untouched",
        out / "xray-tampered.png": "same radiograph with a smooth patch spliced in",
    }
