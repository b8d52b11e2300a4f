"""GAN and diffusion generators: seeded training and sampling, save/load, fakes on a grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medforensics.samples import radiograph_phantom  # noqa: E402
from medforensics.tamper.generators import (  # noqa: E402
    ALL_FAMILIES,
    FAMILIES,
    ImageGenerator,
    ImageGeneratorConfig,
    fake_like,
    load_any,
    sample_unit,
    train_family,
    train_image_generator,
    training_crops,
    unit_range,
)
from medforensics.tamper.synthetic import SliceGenerator  # noqa: E402

#: small enough for a test: 16 px, a handful of steps
TINY: dict[str, dict[str, Any]] = {
    "gan": {"width": 4, "latent": 8},
    "diffusion": {"width": 4, "timesteps": 20, "sample_steps": 5},
    "vae-deconv": {"latent": 8, "width": 4},
    "vae-resize": {"latent": 8, "width": 4},
}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    images = [radiograph_phantom(96, np.random.default_rng(seed))[0] for seed in range(3)]
    return training_crops(images, 16, 48, np.random.default_rng(0))


@pytest.fixture(scope="module", params=FAMILIES)
def generator(request: pytest.FixtureRequest, crops: np.ndarray) -> ImageGenerator:
    family = request.param
    return train_image_generator(crops, family, seed=0, steps=8, batch_size=4, **TINY[family])


def test_training_crops_are_seeded_unit_images(crops: np.ndarray) -> None:
    assert crops.shape == (48, 16, 16) and crops.dtype == np.float32
    assert crops.min() >= 0.0 and crops.max() <= 1.0 and crops.std() > 0.05
    images = [radiograph_phantom(96, np.random.default_rng(seed))[0] for seed in range(3)]
    again = training_crops(images, 16, 48, np.random.default_rng(0))
    np.testing.assert_array_equal(crops, again)
    with pytest.raises(ValueError, match="at least one"):
        training_crops([], 16, 4, np.random.default_rng(0))


def test_samples_are_unit_images_fixed_by_the_seed(generator: ImageGenerator) -> None:
    first = generator.sample(3, seed=5)
    assert first.shape == (3, 16, 16) and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_array_equal(first, generator.sample(3, seed=5))
    assert not np.array_equal(first, generator.sample(3, seed=6))
    assert not np.array_equal(first[0], first[1])


def test_training_is_reproducible(crops: np.ndarray, generator: ImageGenerator) -> None:
    family = generator.family
    again = train_image_generator(crops, family, seed=0, steps=8, batch_size=4, **TINY[family])
    assert again.identity == generator.identity
    other = train_image_generator(crops, family, seed=1, steps=8, batch_size=4, **TINY[family])
    assert other.identity != generator.identity


def test_save_and_load_round_trip(generator: ImageGenerator, tmp_path: Path) -> None:
    path = generator.save(tmp_path / "gen.pt")
    assert path.is_file() and path.with_suffix(".json").is_file()
    loaded = ImageGenerator.load(path.with_suffix(".json"))
    assert loaded.config == generator.config
    assert loaded.identity == generator.identity
    assert loaded.describe()["family"] == generator.family
    np.testing.assert_array_equal(loaded.sample(2, seed=3), generator.sample(2, seed=3))
    assert isinstance(load_any(path), ImageGenerator)
    # the weights file is a plain state_dict, readable without pickle
    assert isinstance(torch.load(path, weights_only=True), dict)


def test_load_names_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing; write both"):
        ImageGenerator.load(tmp_path / "absent.pt")


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_every_family_trains_and_samples_through_one_interface(
    family: str, crops: np.ndarray, tmp_path: Path
) -> None:
    gen = train_family(crops, family, seed=2, steps=4, batch_size=4, **TINY[family])
    units = sample_unit(gen, 2, seed=9)
    assert units.shape == (2, 16, 16) and units.min() >= 0.0 and units.max() <= 1.0
    np.testing.assert_array_equal(units, sample_unit(gen, 2, seed=9))
    loaded = load_any(gen.save(tmp_path / f"{family}.pt"))
    expected = SliceGenerator if family.startswith("vae") else ImageGenerator
    assert isinstance(loaded, expected)
    np.testing.assert_allclose(sample_unit(loaded, 2, seed=9), units, atol=1e-6)


def test_unknown_family_and_bad_config_are_refused(crops: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown generator family"):
        train_family(crops, "flow", seed=0, steps=1)
    with pytest.raises(ValueError, match="power of two"):
        ImageGeneratorConfig("gan", size=24)
    with pytest.raises(ValueError, match="sample_steps"):
        ImageGeneratorConfig("diffusion", timesteps=10, sample_steps=20)
    with pytest.raises(ValueError, match="upsample"):
        ImageGeneratorConfig("gan", upsample="pixelshuffle")


def test_gan_resize_upsampler_builds_a_different_network(crops: np.ndarray) -> None:
    deconv = train_image_generator(crops, "gan", 0, steps=1, batch_size=2, **TINY["gan"])
    resize = train_image_generator(
        crops, "gan", 0, steps=1, batch_size=2, upsample="resize", **TINY["gan"]
    )
    kinds = {type(m).__name__ for m in resize.network.modules()}
    assert "Upsample" in kinds and "ConvTranspose2d" not in kinds
    assert "ConvTranspose2d" in {type(m).__name__ for m in deconv.network.modules()}


def test_diffusion_training_lowers_the_denoising_error(crops: np.ndarray) -> None:
    from medforensics.tamper.generators import cosine_alpha_bar

    def error(gen: ImageGenerator) -> float:
        torch.manual_seed(0)
        x0 = torch.from_numpy(crops[:32, None]) * 2 - 1
        t = torch.arange(32) % gen.config.timesteps
        noise = torch.randn_like(x0)
        a = cosine_alpha_bar(gen.config.timesteps)[t][:, None, None, None]
        with torch.no_grad():
            predicted = gen.network(a.sqrt() * x0 + (1 - a).sqrt() * noise, t.float())
        return float(((predicted - noise) ** 2).mean())

    untrained = train_image_generator(crops, "diffusion", 0, steps=0, **TINY["diffusion"])
    trained = train_image_generator(
        crops, "diffusion", 0, steps=60, batch_size=8, lr=3e-3, **TINY["diffusion"]
    )
    assert error(trained) < 0.8 * error(untrained)


def test_fake_like_maps_to_the_authentic_grid() -> None:
    authentic = radiograph_phantom(64, np.random.default_rng(1))[0]
    low, high = unit_range(authentic)
    assert low < high
    unit = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    fake = fake_like(unit, (40, 56), (low, high), bits=12)
    assert fake.shape == (40, 56) and fake.dtype == np.float32
    np.testing.assert_array_equal(fake, np.rint(fake))
    assert fake.min() >= max(0, np.floor(low)) and fake.max() <= min(4095, np.ceil(high))
    smaller = fake_like(unit, (8, 8), (0.0, 1.0))
    assert smaller.shape == (8, 8) and smaller.min() >= 0.0 and smaller.max() <= 1.0
    eight_bit = fake_like(unit, (16, 16), (-100.0, 400.0), bits=8)
    assert eight_bit.min() >= 0 and eight_bit.max() <= 255
