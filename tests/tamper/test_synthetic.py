"""Synthetic-slice attack: tiny generators train on phantoms, fakes are seeded and on the grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom
from medforensics.tamper import AttackError, create_attack, list_attacks, simulate
from medforensics.tamper.synthetic import (
    FAMILIES,
    SliceGenerator,
    cached_generators,
    save_to_cache,
    train_generator,
)

#: small enough for a test: 32 px, a handful of steps
TINY = {"size": 32, "latent": 8, "width": 4, "steps": 20, "batch_size": 4}


def _volume(n_slices: int = 5, seed: int = 4) -> ImageVolume:
    pixels = np.rint(chest_ct_phantom(n_slices, 64, np.random.default_rng(seed)))
    return ImageVolume("phantom", "dicom-series", "CT", pixels, spacing=(2.5, 1.4, 1.4))


@pytest.fixture(scope="module")
def volume() -> ImageVolume:
    return _volume()


@pytest.fixture(scope="module", params=FAMILIES)
def generator(request: pytest.FixtureRequest, volume: ImageVolume) -> SliceGenerator:
    return train_generator(volume.pixels, request.param, seed=0, **TINY)  # type: ignore[arg-type]


pytestmark = pytest.mark.usefixtures("torch_one_thread", "empty_cache")


def test_registered() -> None:
    assert "synthetic" in list_attacks()
    assert "synthetic" in list_attacks("CT")


def test_generator_makes_slices_of_the_right_shape_and_range(
    generator: SliceGenerator, volume: ImageVolume
) -> None:
    low, high = generator.config.value_range
    sampled = generator.sample(2, seed=1, shape=(64, 48))
    assert sampled.shape == (2, 64, 48) and sampled.dtype == np.float32
    assert sampled.min() >= low and sampled.max() <= high
    rebuilt = generator.reconstruct(volume.pixels[:2], seed=1)
    assert rebuilt.shape == (2, 64, 64)
    # the decoder is not constant: different latents give different slices
    assert not np.array_equal(sampled[0], sampled[1])


def test_training_is_seeded_and_lowers_the_error(volume: ImageVolume) -> None:
    family = FAMILIES[0]
    first = train_generator(volume.pixels, family, seed=3, **TINY)  # type: ignore[arg-type]
    again = train_generator(volume.pixels, family, seed=3, **TINY)  # type: ignore[arg-type]
    assert first.identity == again.identity
    untrained = train_generator(volume.pixels, family, seed=3, **{**TINY, "steps": 0})  # type: ignore[arg-type]
    longer = train_generator(volume.pixels, family, seed=3, **{**TINY, "steps": 60})  # type: ignore[arg-type]

    def error(gen: SliceGenerator) -> float:
        return float(
            np.abs(gen.reconstruct(volume.pixels, seed=0, temperature=0.0) - volume.pixels).mean()
        )

    assert error(longer) < 0.8 * error(untrained)


def test_attack_is_seeded_confined_and_on_the_value_grid(
    generator: SliceGenerator, volume: ImageVolume
) -> None:
    original = volume.pixels.copy()
    options = {"generator": generator}
    first = simulate(volume, "synthetic", 11, options=options)
    again = simulate(volume, "synthetic", 11, options=options)
    other = simulate(volume, "synthetic", 12, options=options, slices=[0, 1])

    np.testing.assert_array_equal(volume.pixels, original)
    np.testing.assert_array_equal(first.pixels, again.pixels)
    assert first.truth.params == again.truth.params
    assert not np.array_equal(first.pixels, other.pixels)

    truth = first.truth
    assert truth.label == "synthetic" and truth.params["family"] == generator.family
    assert truth.params["generator"]["id"] == generator.identity
    replaced = truth.params["slices"]
    touched = truth.mask.any(axis=(1, 2))
    assert sorted(np.flatnonzero(touched).tolist()) == replaced
    assert truth.mask[replaced].all(), "the mask covers every replaced slice whole"
    assert not (first.pixels != volume.pixels)[~truth.mask].any()
    fakes = first.pixels[replaced]
    np.testing.assert_array_equal(fakes, np.rint(fakes))
    assert fakes.min() >= volume.pixels.min() and fakes.max() <= volume.pixels.max()
    json.dumps(truth.to_json())


@pytest.mark.parametrize("mode", ["reconstruct", "sample"])
def test_modes_and_noise_matching(
    generator: SliceGenerator, volume: ImageVolume, mode: str
) -> None:
    plain = simulate(
        volume,
        "synthetic",
        5,
        options={"generator": generator},
        mode=mode,
        match_noise=False,
        slices=[2],
    )
    noisy = simulate(
        volume,
        "synthetic",
        5,
        options={"generator": generator},
        mode=mode,
        match_noise=True,
        slices=[2],
    )
    assert noisy.truth.params["noise_sigma"][0] > 5.0  # the phantom has about 18 HU of noise
    rough = np.abs(np.diff(noisy.pixels[2], axis=1)).mean()
    smooth = np.abs(np.diff(plain.pixels[2], axis=1)).mean()
    assert rough > smooth


def test_two_dimensional_image(generator: SliceGenerator) -> None:
    image = _volume(n_slices=1, seed=9)
    result = simulate(image, "synthetic", 2, options={"generator": generator})
    assert result.truth.params["slices"] == [0]
    assert result.truth.mask.all()


def test_without_a_generator_the_error_says_how_to_get_one(volume: ImageVolume) -> None:
    with pytest.raises(AttackError, match=r"train_generator.*save_to_cache.*train_on_volume"):
        simulate(volume, "synthetic", 0)


def test_cached_generator_is_found_and_loads_identically(
    generator: SliceGenerator, volume: ImageVolume, empty_cache: Path
) -> None:
    path = save_to_cache(generator)
    assert path.parent == empty_cache / "generators"
    assert cached_generators(generator.family) == [path]
    loaded = SliceGenerator.load(path)
    assert loaded.identity == generator.identity
    np.testing.assert_array_equal(loaded.sample(1, 3, (64, 64)), generator.sample(1, 3, (64, 64)))
    from_cache = simulate(volume, "synthetic", 7)  # no options: the cache is used
    direct = simulate(volume, "synthetic", 7, options={"generator": generator})
    np.testing.assert_array_equal(from_cache.pixels, direct.pixels)
    by_path = simulate(volume, "synthetic", 7, options={"generator": str(path)})
    np.testing.assert_array_equal(by_path.pixels, direct.pixels)


def test_train_on_volume_fallback(volume: ImageVolume) -> None:
    result = simulate(volume, "synthetic", 1, train_on_volume=True, train_steps=3, train_size=32)
    assert result.truth.params["generator"]["trained_on"] == "the attacked volume itself"
    assert result.truth.mask.any()


def test_generator_of_another_modality_is_refused(generator: SliceGenerator) -> None:
    mr = ImageVolume("mr", "nifti", "MR", np.full((2, 32, 32), 100.0, np.float32))
    with pytest.raises(AttackError, match="trained on CT"):
        create_attack("synthetic", generator=generator)(mr, np.random.default_rng(0))
