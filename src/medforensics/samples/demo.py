"""The demo's inputs: phantom scans, authentic and tampered, written as real files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from medforensics.samples.phantom import chest_ct_phantom, radiograph_phantom
from medforensics.samples.write import write_ct_series

#: the pixel and slice spacing the demo's CT series are written with (``write_ct_series``'s)
WRITE_SPACING = (2.5, 0.7, 0.7)


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


def _ctgan_pipeline(ct: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``ct`` through the simulator's ``ctgan-inject`` (at the spacing ``write_ct_series`` uses)."""
    from medforensics.io.types import ImageVolume
    from medforensics.tamper.registry import create_attack

    volume = ImageVolume(
        input="demo", kind="dicom-series", modality="CT", pixels=ct, spacing=WRITE_SPACING
    )
    return create_attack("ctgan-inject")(volume, rng).pixels


def build_demo_inputs(out: Path, rng: np.random.Generator) -> dict[Path, str]:
    """Write three CT series and two radiographs under ``out``; return path → description."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("ct-authentic", "ct-tampered", "ct-ctgan-pipeline"):
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
    # last, so the draws above (and the samples they make) are as they were before it existed
    write_ct_series(
        _ctgan_pipeline(ct, rng), out / "ct-ctgan-pipeline", WRITE_SPACING, patient_id="DEMO-CT-1"
    )
    return {
        out / "ct-authentic": "phantom chest CT, 24 slices, untouched",
        out / "ct-tampered": "same CT with a region spliced in from a smoother reconstruction",
        out / "ct-ctgan-pipeline": (
            "same CT with a nodule injected the way CT-GAN's tool does it: the whole scan "
            "re-gridded through 1 mm voxels, the edit, original pixels pasted back around it"
        ),
        out / "xray-authentic.png": "phantom chest radiograph, 16-bit PNG, untouched",
        out / "xray-tampered.png": "same radiograph with a smooth patch spliced in",
    }
