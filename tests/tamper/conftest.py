"""Small phantom images for the attack tests: a CT series, a CT slice, a radiograph, an MR."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom, correlated_noise, radiograph_phantom


def mr_phantom(n_slices: int = 6, size: int = 128, seed: int = 3) -> np.ndarray:
    """A head-like MR phantom: skull-free brain ellipse, brighter core, coloured noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    c = size / 2
    brain = ((yy - c) / (0.39 * size)) ** 2 + ((xx - c) / (0.31 * size)) ** 2 <= 1
    core = ((yy - c) / (0.23 * size)) ** 2 + ((xx - c) / (0.17 * size)) ** 2 <= 1
    image = np.where(brain, 600.0, 20.0) + np.where(core, 200.0, 0.0)
    planes = [image + correlated_noise((size, size), 15.0, rng, 0.5) for _ in range(n_slices)]
    return np.clip(np.stack(planes), 0, None).astype(np.float32)


def ct_series() -> ImageVolume:
    pixels = chest_ct_phantom(8, 128, np.random.default_rng(1))
    return ImageVolume("ct-series", "dicom-series", "CT", pixels, spacing=(2.5, 1.4, 1.4))


VOLUMES = {
    "ct-series": ct_series,
    "ct-slice": lambda: ImageVolume(
        "ct-slice", "dicom-series", "CT", chest_ct_phantom(1, 128, np.random.default_rng(2))
    ),
    "radiograph": lambda: ImageVolume(
        "radiograph",
        "image",
        "DX",
        radiograph_phantom(192, np.random.default_rng(1)),
        spacing=(math.nan, 1.0, 1.0),
        bits_stored=12,
    ),
    "mr": lambda: ImageVolume("mr", "nifti", "MR", mr_phantom(), spacing=(1.5, 1.5, 1.5)),
}


@pytest.fixture(params=sorted(VOLUMES))
def any_volume(request: pytest.FixtureRequest) -> ImageVolume:
    return VOLUMES[request.param]()


@pytest.fixture
def ct_volume() -> ImageVolume:
    return ct_series()


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty generator cache (``$MEDFORENSICS_CACHE``) for this test."""
    from medforensics.tamper.synthetic import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"
