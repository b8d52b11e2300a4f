"""CT-GAN's re-gridding, its touch-ups, and the attacks that wrap our edits in them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medforensics.io.types import ImageVolume
from medforensics.tamper.base import AttackError
from medforensics.tamper.registry import create_attack
from medforensics.tamper.regrid import round_trip, touch_up_removal, touch_up_weights


@pytest.mark.parametrize("name, label", [("ctgan-inject", "FM"), ("ctgan-remove", "FB")])
def test_pipeline_attack_regrids_everything_and_records_the_edit(
    ct_volume: ImageVolume, name: str, label: str
) -> None:
    before = ct_volume.pixels.copy()
    result = create_attack(name)(ct_volume, np.random.default_rng(4))
    again = create_attack(name)(ct_volume, np.random.default_rng(4))
    assert np.array_equal(ct_volume.pixels, before)  # the input is untouched
    assert np.array_equal(result.pixels, again.pixels)  # seeded
    truth = result.truth
    assert truth.label == label and truth.attack == name
    assert truth.params["inner"] in ("inject", "remove") and truth.params["grid_mm"] == 1.0
    assert truth.mask.any() and truth.centre is not None and truth.mask[truth.centre]
    # the round trip changed pixels far from the edit, exactly as round_trip alone does
    regridded = round_trip(ct_volume.pixels, ct_volume.spacing)
    far = np.ones(truth.mask.shape, dtype=bool)
    _, r, c = truth.centre
    far[:, max(0, r - 32) : r + 32, max(0, c - 32) : c + 32] = False
    assert np.array_equal(result.pixels[far], regridded[far])
    assert not np.array_equal(result.pixels[far], ct_volume.pixels[far])
    # and the edit is there
    assert not np.allclose(result.pixels[truth.mask], regridded[truth.mask])


def test_pipeline_attack_is_ct_only(ct_volume: ImageVolume) -> None:
    mr = dataclasses.replace(ct_volume, modality="MR")
    with pytest.raises(AttackError, match="CT"):
        create_attack("ctgan-inject")(mr, np.random.default_rng(0))


def test_removal_touch_up_keeps_the_centre_and_restores_the_rim() -> None:
    rng = np.random.default_rng(0)
    original = rng.normal(0.0, 10.0, (4, 128, 128)).astype(np.float32)
    regridded = original + 100.0
    out = touch_up_removal(original, regridded, (2, 64, 64))
    assert out[2, 64, 64] == pytest.approx(regridded[2, 64, 64], abs=1.0)
    assert out[2, 32, 32] == pytest.approx(original[2, 32, 32], abs=1e-3)  # cube corner
    assert np.array_equal(out[:, :30], regridded[:, :30])  # outside the cube
    assert touch_up_weights(64, 0.1)[32, 32] == 1.0
