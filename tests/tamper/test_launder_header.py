"""Laundering keeps the attack's mask; header forgeries change only what they say."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom, write_ct_series
from medforensics.tamper import simulate
from medforensics.tamper.header import create_header_attack, forge_headers
from medforensics.tamper.launder import LAUNDER_OPS


@pytest.mark.parametrize("op", sorted(LAUNDER_OPS))
def test_each_laundering_changes_the_image_and_is_seeded(ct_volume: ImageVolume, op: str) -> None:
    plain = simulate(ct_volume, "inject", 4)
    laundered = simulate(ct_volume, "inject", 4, launder=[op])
    again = simulate(ct_volume, "inject", 4, launder=[op])
    np.testing.assert_array_equal(laundered.pixels, again.pixels)
    np.testing.assert_array_equal(laundered.truth.mask, plain.truth.mask)  # the attack's footprint
    assert laundered.truth.params["laundering"][0]["op"] == op
    assert not np.array_equal(laundered.pixels, plain.pixels)
    # laundering never moves the attack's own random draws
    assert {
        k: v for k, v in laundered.truth.params.items() if k != "laundering"
    } == plain.truth.params


def test_laundering_chain_is_recorded_in_order(ct_volume: ImageVolume) -> None:
    result = simulate(ct_volume, "copy-move", 1, launder=["resample", "jpeg"])
    assert [step["op"] for step in result.truth.params["laundering"]] == ["resample", "jpeg"]


def test_unknown_laundering_is_named(ct_volume: ImageVolume) -> None:
    with pytest.raises(KeyError, match="unknown laundering blur"):
        simulate(ct_volume, "inject", 0, launder=["blur"])


def _datasets(folder: Path, patient: str, seed: int) -> list[pydicom.Dataset]:
    hu = chest_ct_phantom(2, 32, np.random.default_rng(seed))
    return [pydicom.dcmread(p) for p in write_ct_series(hu, folder, patient_id=patient)]


def test_patient_swap_and_date_shift_touch_only_their_elements(tmp_path: Path) -> None:
    datasets = _datasets(tmp_path / "a", "P-A", 0)
    before = copy.deepcopy(datasets)
    swapped = forge_headers(datasets, "patient-swap", 3)
    shifted = forge_headers(datasets, "date-shift", 3)
    assert [ds.PatientID for ds in datasets] == ["P-A", "P-A"]  # inputs untouched
    assert all(a == b for a, b in zip(before, datasets, strict=True))
    assert {ds.PatientID for ds in swapped.datasets} == {
        swapped.truth.params["identity"]["PatientID"]
    }
    assert swapped.truth.label == "header" and not swapped.truth.mask.any()
    for old, new in zip(datasets, shifted.datasets, strict=True):
        changed = {e.keyword for e in old if new[e.tag].value != e.value}
        assert changed <= {"StudyDate", "SeriesDate", "ContentDate"}
        assert new.PixelData == old.PixelData
    assert forge_headers(datasets, "date-shift", 3).truth.params == shifted.truth.params


def test_pixel_swap_needs_a_matching_donor(tmp_path: Path) -> None:
    target = _datasets(tmp_path / "a", "P-A", 0)
    donor = _datasets(tmp_path / "b", "P-B", 1)
    result = forge_headers(target, "pixel-swap", 0, donor=donor)
    assert result.truth.mask.all()
    assert result.datasets[0].PatientID == "P-A"
    assert result.datasets[0].PixelData in {ds.PixelData for ds in donor}
    with pytest.raises(ValueError, match="needs donor"):
        create_header_attack("pixel-swap").sample_params(target, np.random.default_rng(0))
