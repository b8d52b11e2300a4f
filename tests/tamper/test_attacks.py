"""Every attack, on every kind of image: seeded, confined to its mask, input untouched."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medforensics.io.types import ImageVolume
from medforensics.tamper import (
    LABELS,
    AttackError,
    GroundTruth,
    create_attack,
    list_attacks,
    simulate,
)

ATTACKS = ("copy-move", "inject", "inpaint", "launder", "remove", "splice")


def test_registry_lists_the_builtin_attacks() -> None:
    assert set(ATTACKS) <= set(list_attacks())
    assert set(list_attacks("CT")) == set(list_attacks())


def test_unknown_attack_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"known attacks: .*inject"):
        create_attack("no-such-attack")


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_is_seeded_confined_and_pure(any_volume: ImageVolume, attack: str) -> None:
    original = any_volume.pixels.copy()
    first = simulate(any_volume, attack, 11)
    again = simulate(any_volume, attack, 11)
    other = simulate(any_volume, attack, 12)

    np.testing.assert_array_equal(any_volume.pixels, original)  # input not mutated
    np.testing.assert_array_equal(first.pixels, again.pixels)
    assert first.truth.params == again.truth.params
    np.testing.assert_array_equal(first.truth.mask, again.truth.mask)
    assert not np.array_equal(first.pixels, other.pixels)

    changed = first.pixels != any_volume.pixels
    assert changed.any()
    assert not changed[~first.truth.mask].any(), "pixels changed outside the ground-truth mask"
    assert first.pixels.dtype == np.float32 and first.pixels.shape == any_volume.shape
    assert first.truth.centre is not None and first.truth.mask[first.truth.centre]
    assert first.truth.label in LABELS
    json.dumps(first.truth.to_json())  # JSON-serialisable


def test_labels_follow_ctgan_scheme(ct_volume: ImageVolume) -> None:
    assert simulate(ct_volume, "inject", 0).truth.label == "FM"  # fake malign: injected
    assert simulate(ct_volume, "remove", 0).truth.label == "FB"  # false benign: removed


def test_overrides_replace_sampled_params_without_moving_the_noise(ct_volume: ImageVolume) -> None:
    base = simulate(ct_volume, "inject", 5)
    bigger = simulate(ct_volume, "inject", 5, diameter_mm=20.0, nodule_type="solid")
    assert bigger.truth.params["diameter_mm"] == 20.0
    assert bigger.truth.params["centre"] == base.truth.params["centre"]
    assert bigger.truth.mask.sum() > base.truth.mask.sum()


def test_injected_series_nodule_spans_slices(ct_volume: ImageVolume) -> None:
    result = simulate(ct_volume, "inject", 3, diameter_mm=14.0, nodule_type="solid", lobulation=0.0)
    slices_touched = int(result.truth.mask.any(axis=(1, 2)).sum())
    assert slices_touched >= 3  # 14 mm over 2.5 mm slices is an ellipsoid, not a disc
    assert result.truth.params["placement"].startswith("anatomy")
    z, y, x = result.truth.centre
    assert result.pixels[z, y, x] > -300  # a solid nodule in aerated lung (about -850 HU)


def test_removal_of_a_given_box(ct_volume: ImageVolume) -> None:
    box = [2, 6, 50, 66, 30, 44]
    result = simulate(ct_volume, "remove", 0, box=box, source="given")
    bbox = result.truth.bbox
    assert bbox is not None and bbox[0] == (2, 6)
    assert result.truth.mask[4, 58, 37]


def test_splice_takes_a_donor_volume(ct_volume: ImageVolume) -> None:
    donor = ImageVolume(
        "donor", "dicom-series", "CT", ct_volume.pixels[::-1].copy(), spacing=ct_volume.spacing
    )
    result = simulate(ct_volume, "splice", 2, options={"donor": donor})
    assert result.truth.params["donor"] == "given"
    assert result.truth.params["donor_input"] == "donor"


def test_ground_truth_rejects_a_centre_outside_its_mask() -> None:
    mask = np.zeros((1, 4, 4), dtype=bool)
    mask[0, 1, 1] = True
    with pytest.raises(ValueError, match="not in its mask"):
        GroundTruth("x", "FM", {}, (0, 3, 3), mask)
    with pytest.raises(ValueError, match="label"):
        GroundTruth("x", "TN", {}, (0, 1, 1), mask)  # type: ignore[arg-type]


def test_attack_restricted_to_modalities_says_so(ct_volume: ImageVolume) -> None:
    attack = create_attack("inject")
    attack.modalities = ("MR",)  # type: ignore[misc]
    with pytest.raises(AttackError, match="works on MR images, not on CT"):
        attack.check(ct_volume)


def _wall_and_lung(n_slices: int = 3) -> ImageVolume:
    """A chest wall (40 HU, left of column 48) against aerated lung (-850 HU), with noise."""
    rng = np.random.default_rng(5)
    pixels = np.full((n_slices, 96, 96), -850.0, dtype=np.float32)
    pixels[:, :, :48] = 40.0
    pixels += rng.normal(0.0, 15.0, pixels.shape).astype(np.float32)
    return ImageVolume("wall", "dicom-series", "CT", np.rint(pixels), spacing=(2.5, 0.7, 0.7))


@pytest.mark.parametrize("method", ["biharmonic", "telea"])
def test_removal_at_the_chest_wall_continues_the_wall(method: str) -> None:
    volume = _wall_and_lung()
    box = [0, 3, 30, 66, 30, 66]  # a "lesion" straddling the wall
    result = simulate(volume, "remove", 0, box=box, method=method, shape="rect")
    assert result.truth.params["mixed_slices"] == [0, 1, 2]
    inside = result.pixels[1, 40:56]
    assert np.median(inside[:, 38:44]) > -150  # wall side stays wall
    assert np.median(inside[:, 52:58]) < -700  # lung side stays lung
    plain = simulate(volume, "remove", 0, box=box, method=method, shape="rect", tissue_aware=False)
    assert plain.truth.params["mixed_slices"] == []
    if method == "biharmonic":  # its plain fill smears the wall into the lung (a grey patch)
        assert np.median(plain.pixels[1, 40:56, 52:58]) > np.median(inside[:, 52:58]) + 100


def test_removal_inside_the_lung_is_a_plain_fill() -> None:
    volume = _wall_and_lung()
    box = [0, 3, 40, 56, 72, 88]  # lung only, further than the ring from the wall
    result = simulate(volume, "remove", 0, box=box, method="telea", shape="rect")
    plain = simulate(volume, "remove", 0, box=box, method="telea", shape="rect", tissue_aware=False)
    assert result.truth.params["tissue_aware"] is True
    assert result.truth.params["mixed_slices"] == []
    np.testing.assert_array_equal(result.pixels, plain.pixels)
