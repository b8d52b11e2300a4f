"""Noise matching: the NPS estimate, and injected/removed regions as noisy as their surroundings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medforensics.io.types import ImageVolume
from medforensics.samples import correlated_noise
from medforensics.tamper import simulate
from medforensics.tamper.texture import (
    STRUCTURE_SIGMA,
    estimate_noise,
    highpass,
    structure_mask,
    synthesize_noise,
)


def test_noise_estimate_recovers_sigma_and_spectrum() -> None:
    noise = correlated_noise((128, 128), 18.0, np.random.default_rng(0))
    model = estimate_noise(noise)
    assert model.sigma == pytest.approx(18.0, rel=0.1)
    synthetic = synthesize_noise((128, 128), model, np.random.default_rng(1))
    # same high-pass energy: the spectrum's shape is right, not only its total power
    ratio = highpass(synthetic).std() / highpass(noise).std()
    assert ratio == pytest.approx(1.0, abs=0.1)


def test_noise_estimate_ignores_edges_and_vessels(ct_volume: ImageVolume) -> None:
    # the 128-pixel phantom is dense with vessel and organ edges worth hundreds of HU
    model = estimate_noise(ct_volume.pixels[3:6, 20:108, 20:108])
    assert model.sigma == pytest.approx(18.0, rel=0.2)  # the phantom's noise is 18 HU


def _core_and_ring(mask: np.ndarray, z: int) -> tuple[np.ndarray, np.ndarray]:
    core = ndimage.binary_erosion(mask[z], iterations=3)
    ring = ndimage.binary_dilation(mask[z], iterations=12) & ~ndimage.binary_dilation(
        mask[z], iterations=4
    )
    return core, ring


def _noise_std(image: np.ndarray, region: np.ndarray) -> float:
    """Std of the 1-pixel high-pass residual over the noise-only pixels of ``region``.

    Vessels and organ edges are left out (``structure_mask``): the phantom is dense with them,
    and they would make the surroundings look twice as noisy as they are.
    """
    ys, xs = np.nonzero(region)
    crop = (slice(max(ys.min() - 8, 0), ys.max() + 9), slice(max(xs.min() - 8, 0), xs.max() + 9))
    keep = region[crop] & ~structure_mask(highpass(image[crop], STRUCTURE_SIGMA))
    return float(highpass(image)[crop][keep].std())


#: a large, sharp, texture-free solid nodule: its core is flat, so all high-pass energy is noise
NODULE = {
    "nodule_type": "solid",
    "diameter_mm": 24.0,
    "lobulation": 0.0,
    "texture_hu": 0.0,
    "margin_mm": 0.3,
}


def _nodule_ratio(
    volume: ImageVolume, result_pixels: np.ndarray, mask: np.ndarray, z: int
) -> float:
    core = ndimage.binary_erosion(mask[z], iterations=4)  # 4 px clear of the edge's high-pass
    ring = ndimage.binary_dilation(mask[z], iterations=12) & ~ndimage.binary_dilation(
        mask[z], iterations=4
    )
    return float(highpass(result_pixels[z])[core].std()) / _noise_std(result_pixels[z], ring)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_injected_nodule_is_as_noisy_as_the_lung_around_it(
    ct_volume: ImageVolume, seed: int
) -> None:
    result = simulate(ct_volume, "inject", seed, **NODULE)
    ratio = _nodule_ratio(ct_volume, result.pixels, result.truth.mask, result.truth.centre[0])
    # measured on seeds 0-7: 0.83-1.07; on the shared CT series 0.83-1.46, median 1.08
    # (benchmarks/bench_dataset_builder.py realism); a 70-pixel core gives its std about 10%
    # sampling error, hence the 25% bound
    assert ratio == pytest.approx(1.0, abs=0.25)


def test_without_matched_noise_the_nodule_would_be_smooth(ct_volume: ImageVolume) -> None:
    import medforensics.tamper.inject as inject

    real = inject.noise_for_region

    def silent(
        pixels: np.ndarray, box: tuple[slice, ...], rng: np.random.Generator, **kw: object
    ) -> tuple[np.ndarray, object]:
        return np.zeros_like(pixels[box]), real(pixels, box, rng)[1]  # type: ignore[arg-type]

    inject.noise_for_region = silent  # type: ignore[assignment]
    try:
        result = simulate(ct_volume, "inject", 0, **NODULE)
    finally:
        inject.noise_for_region = real  # type: ignore[assignment]
    ratio = _nodule_ratio(ct_volume, result.pixels, result.truth.mask, result.truth.centre[0])
    assert ratio < 0.3  # the smooth patch the bound above guards against


def test_removed_region_keeps_the_noise_level(ct_volume: ImageVolume) -> None:
    result = simulate(ct_volume, "remove", 4, box=[2, 6, 48, 70, 26, 44], feather_px=2.0)
    z = 4
    core, ring = _core_and_ring(result.truth.mask, z)
    ratio = _noise_std(result.pixels[z], core) / _noise_std(result.pixels[z], ring)
    assert ratio == pytest.approx(1.0, abs=0.25)  # seeds 0-7 on this box: 0.87-1.05
