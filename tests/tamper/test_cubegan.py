"""CT-GAN-style learned in-painting: a tiny generator trains on phantoms; both attacks are seeded,
local, on the value grid, and refuse clearly when no generator is at hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

pytest.importorskip("torch")

from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom, write_ct_series
from medforensics.tamper import AttackError, list_attacks, simulate
from medforensics.tamper.cubegan import (
    CubeInpainter,
    InpainterConfig,
    cached_inpainters,
    crop_indices,
    paint,
    save_to_cache,
    train_inpainter,
    training_cubes,
)
from medforensics.tamper.dicom_out import write_tampered

from .conftest import mr_phantom

ATTACKS = ("gan-inject", "gan-remove")


def _ct(n_slices: int = 6, seed: int = 4) -> ImageVolume:
    pixels = np.rint(chest_ct_phantom(n_slices, 96, np.random.default_rng(seed)))
    return ImageVolume("phantom", "dicom-series", "CT", pixels, spacing=(2.5, 1.4, 1.4))


def _tiny(modality: str, value_range: tuple[float, float]) -> InpainterConfig:
    return InpainterConfig(modality, value_range, depth=3, size=16, width=4)


pytestmark = pytest.mark.usefixtures("torch_one_thread", "empty_cache")


@pytest.fixture(scope="module")
def volume() -> ImageVolume:
    return _ct()


@pytest.fixture(scope="module")
def inpainter(volume: ImageVolume) -> CubeInpainter:
    config = _tiny("CT", (-1024.0, 1024.0))
    return train_inpainter([volume], 0, steps=4, batch_size=2, config=config, per_volume=8)


def test_registered_for_every_modality() -> None:
    for name in ATTACKS:
        assert name in list_attacks("CT") and name in list_attacks("MR")


@pytest.mark.parametrize("attack", ATTACKS)
def test_seeded_local_and_on_the_value_grid(
    attack: str, volume: ImageVolume, inpainter: CubeInpainter
) -> None:
    options = {"inpainter": inpainter}
    first = simulate(volume, attack, 5, options=options)
    again = simulate(volume, attack, 5, options=options)
    other = simulate(volume, attack, 6, options=options)
    np.testing.assert_array_equal(first.pixels, again.pixels)
    assert not np.array_equal(first.pixels, other.pixels)
    changed = first.pixels != volume.pixels
    assert changed.any()
    np.testing.assert_array_equal(changed, first.truth.mask)  # only inside its mask
    assert first.truth.mask[first.truth.centre]
    assert first.truth.mask.sum() < 0.05 * volume.pixels.size  # a local edit
    np.testing.assert_array_equal(first.pixels, np.rint(first.pixels))  # integer HU, as stored
    assert first.pixels.min() >= volume.pixels.min() and first.pixels.max() <= volume.pixels.max()
    assert first.truth.label == ("FM" if attack == "gan-inject" else "FB")
    assert first.truth.params["inpainter"]["id"] == inpainter.identity


def test_removal_erases_the_given_box(volume: ImageVolume, inpainter: CubeInpainter) -> None:
    box = [2, 4, 40, 52, 30, 44]
    result = simulate(volume, "gan-remove", 1, options={"inpainter": inpainter}, box=box)
    z0, z1, y0, y1, x0, x1 = box
    inside = result.truth.mask[z0:z1, y0:y1, x0:x1]
    assert inside.mean() > 0.5
    assert not result.truth.mask[:z0].any() and not result.truth.mask[z1:].any()


def test_save_load_and_cache_give_the_same_fake(
    volume: ImageVolume, inpainter: CubeInpainter, tmp_path: Path
) -> None:
    path = inpainter.save(tmp_path / "inp.pt")
    loaded = CubeInpainter.load(path.with_suffix(".json"))
    assert loaded.identity == inpainter.identity and loaded.config == inpainter.config
    direct = simulate(volume, "gan-inject", 9, options={"inpainter": inpainter})
    by_path = simulate(volume, "gan-inject", 9, inpainter_path=str(path))
    np.testing.assert_array_equal(direct.pixels, by_path.pixels)
    assert cached_inpainters("CT") == []
    save_to_cache(inpainter)
    assert len(cached_inpainters("CT")) == 1 and cached_inpainters("MR") == []
    from_cache = simulate(volume, "gan-inject", 9)  # no options: the cache is used
    np.testing.assert_array_equal(direct.pixels, from_cache.pixels)


def test_missing_or_mismatched_inpainter_is_explained(
    volume: ImageVolume, inpainter: CubeInpainter, tmp_path: Path
) -> None:
    with pytest.raises(AttackError, match="train-attack cube-gan"):
        simulate(volume, "gan-remove", 0)
    mr = ImageVolume("mr", "nifti", "MR", mr_phantom(4, 64), spacing=(1.5, 1.5, 1.5))
    with pytest.raises(AttackError, match="trained on CT scans, this is MR"):
        simulate(mr, "gan-inject", 0, options={"inpainter": inpainter})
    with pytest.raises(AttackError, match="missing"):
        simulate(volume, "gan-inject", 0, inpainter_path=str(tmp_path / "nothing.pt"))


def test_single_slice_and_mr_work(inpainter: CubeInpainter) -> None:
    single = _ct(1, seed=8)
    result = simulate(single, "gan-inject", 2, options={"inpainter": inpainter})
    assert result.pixels.shape == single.shape and result.truth.mask.any()
    mr = ImageVolume("mr", "nifti", "MR", mr_phantom(5, 64), spacing=(1.5, 1.5, 1.5))
    config = _tiny("MR", (0.0, 900.0))
    mr_inpainter = train_inpainter([mr], 1, steps=2, batch_size=2, config=config, per_volume=4)
    for attack in ATTACKS:
        out = simulate(mr, attack, 3, options={"inpainter": mr_inpainter})
        np.testing.assert_array_equal(out.pixels != mr.pixels, out.truth.mask)


def test_train_on_volume_needs_no_cache() -> None:
    small = _ct(3, seed=2)
    result = simulate(small, "gan-remove", 4, train_on_volume=True, train_steps=1)
    assert result.truth.params["inpainter"]["trained_on"] == "the attacked volume itself"


def test_crop_indices_repeat_slices_and_mirror_borders() -> None:
    zi, yi, xi = crop_indices((0, 1, 30), (2, 32, 32), 5, (8, 8))
    np.testing.assert_array_equal(zi, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(yi, [3, 2, 1, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(xi, [26, 27, 28, 29, 30, 31, 30, 29])


def test_training_cubes_come_from_the_lung(volume: ImageVolume) -> None:
    config = _tiny("CT", (-1024.0, 1024.0))
    cubes = training_cubes([volume], config, seed=0, per_volume=10)
    assert cubes.shape[1:] == (3, 16, 16) and len(cubes) >= 5
    centres = cubes[:, 1, 8, 8]
    assert np.median(centres) < 0  # lung and vessels, not the chest wall or outside air only


def test_paint_keeps_pixels_outside_the_hole(volume: ImageVolume, inpainter: CubeInpainter) -> None:
    hole = np.zeros(volume.shape, dtype=bool)
    hole[3, 2:8, 2:8] = True  # at the image border: mirrored context, nothing written twice
    pixels, mask = paint(inpainter, volume, hole, None, seed=0, feather_px=0.0)
    assert not mask[~hole].any()
    np.testing.assert_array_equal(pixels[~hole], volume.pixels[~hole])


@pytest.mark.parametrize("attack", ATTACKS)
def test_written_back_as_dicom_only_pixel_data_changes(
    attack: str, inpainter: CubeInpainter, tmp_path: Path
) -> None:
    hu = np.rint(chest_ct_phantom(5, 96, np.random.default_rng(7)))
    write_ct_series(hu, tmp_path / "in", spacing=(2.5, 1.4, 1.4))
    volume = next(v for v in load_paths([str(tmp_path / "in")]) if isinstance(v, ImageVolume))
    result = simulate(volume, attack, 2, options={"inpainter": inpainter})
    written = write_tampered(volume, result.pixels, tmp_path / "out")
    for source, target in zip(volume.source_files, written, strict=True):
        old, new = pydicom.dcmread(source), pydicom.dcmread(target)
        del old.PixelData, new.PixelData
        assert old == new and old.file_meta == new.file_meta  # headers untouched
    back = next(v for v in load_paths([str(tmp_path / "out")]) if isinstance(v, ImageVolume))
    np.testing.assert_array_equal(back.pixels, result.pixels)  # on the grid: exact
    assert not np.array_equal(back.pixels, volume.pixels)
