"""Patient-level splits: disjoint, reproducible, stratified; leaky splits are refused."""

from __future__ import annotations

import numpy as np
import pytest

from medforensics.evaluate.splits import (
    LeakageError,
    check_disjoint,
    leave_one_scanner_out,
    scanner_key,
    split_by_patient,
)

# 40 patients with 3 slices each; patients 0-19 authentic, 20-39 manipulated.
PATIENTS = [f"patient-{index:02d}" for index in range(40) for _ in range(3)]
LABELS = [int(index >= 20) for index in range(40) for _ in range(3)]


def test_no_patient_on_two_sides_and_everyone_placed() -> None:
    split = split_by_patient(PATIENTS, seed=3, labels=LABELS)
    train, val, test = set(split.train), set(split.val), set(split.test)
    assert not train & val and not train & test and not val & test
    assert train | val | test == set(PATIENTS)
    # Every slice of a patient lands in its patient's part.
    parts = split.part_of(PATIENTS).reshape(40, 3)
    assert (parts == parts[:, :1]).all()
    indices = split.indices(PATIENTS)
    assert sum(len(index) for index in indices.values()) == len(PATIENTS)


def test_stratified_counts() -> None:
    # Each class has 20 patients: 0.7 / 0.15 / 0.15 -> 14 / 3 / 3 per class.
    split = split_by_patient(PATIENTS, seed=3, labels=LABELS)
    assert (len(split.train), len(split.val), len(split.test)) == (28, 6, 6)
    manipulated = {f"patient-{index:02d}" for index in range(20, 40)}
    assert len(set(split.test) & manipulated) == 3
    assert len(set(split.val) & manipulated) == 3
    assert split.warnings == ()


def test_same_seed_same_split_whatever_the_item_order() -> None:
    first = split_by_patient(PATIENTS, seed=11, labels=LABELS)
    order = np.random.default_rng(0).permutation(len(PATIENTS))
    shuffled = split_by_patient(
        [PATIENTS[i] for i in order], seed=11, labels=[LABELS[i] for i in order]
    )
    assert first == shuffled
    assert split_by_patient(PATIENTS, seed=12, labels=LABELS) != first


def test_unlabelled_split_and_numeric_ids() -> None:
    split = split_by_patient(list(range(10)), fractions=(0.8, 0.0, 0.2), seed=0)
    # 10 * 0.8 = 8 train, 0 val, 2 test
    assert (len(split.train), len(split.val), len(split.test)) == (8, 0, 2)
    assert set(split.train) | set(split.test) == {str(index) for index in range(10)}


def test_too_few_patients_warns() -> None:
    split = split_by_patient(["only"], seed=0)
    assert split.train == ("only",) and split.test == ()
    assert any("test part is empty" in warning for warning in split.warnings)
    # Three manipulated, one authentic: the authentic patient lands in train.
    split = split_by_patient(["a", "b", "c", "d"], seed=0, labels=[0, 1, 1, 1])
    assert any("no authentic patient" in warning for warning in split.warnings)


def test_check_disjoint_refuses_a_leaky_split_and_names_the_patient() -> None:
    train = ["patient-01", "patient-02", "patient-07", "patient-07"]
    test = ["patient-07", "patient-09"]
    with pytest.raises(LeakageError, match="patient-07") as caught:
        check_disjoint(train, test)
    assert caught.value.patients == ("patient-07",)
    assert "train and test" in str(caught.value)
    check_disjoint(["patient-01"], ["patient-02"])  # disjoint: no error


def test_leakage_message_lists_patients_and_counts_the_rest() -> None:
    shared = [f"p{index:02d}" for index in range(12)]
    with pytest.raises(LeakageError, match="12 patient") as caught:
        check_disjoint(shared, shared, sides=("val", "test"))
    assert "and 2 more" in str(caught.value)
    assert "val and test" in str(caught.value)


@pytest.mark.parametrize(
    ("fractions", "message"),
    [((0.5, 0.5), "3 numbers"), ((0.7, 0.2, 0.2), "sum to 1"), ((1.2, -0.1, -0.1), "sum to 1")],
)
def test_bad_fractions(fractions: tuple[float, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_by_patient(PATIENTS, fractions=fractions)


def test_scanner_key_normalises() -> None:
    assert scanner_key("SIEMENS", "SOMATOM  Definition ") == "siemens/somatom definition"
    assert scanner_key(" Siemens", "somatom definition") == "siemens/somatom definition"
    assert scanner_key(None, "") == "unknown/unknown"


def test_leave_one_scanner_out_keeps_patients_on_one_side() -> None:
    scanners = ["ge/a", "ge/a", "siemens/b", "siemens/b", "philips/c", "philips/c"]
    patients = ["p1", "p1", "p2", "p1", "p3", "p4"]  # p1 was scanned on two scanners
    folds = leave_one_scanner_out(scanners, patients)
    assert [fold.held_out for fold in folds] == ["ge/a", "philips/c", "siemens/b"]
    for fold in folds:
        train_patients = {patients[index] for index in fold.train_indices}
        test_patients = {patients[index] for index in fold.test_indices}
        assert not train_patients & test_patients
        assert {scanners[index] for index in fold.test_indices} == {fold.held_out}
    ge_fold = folds[0]
    # p1's siemens slice (index 3) must leave training when ge/a is held out.
    assert ge_fold.dropped_patients == ("p1",)
    np.testing.assert_array_equal(ge_fold.train_indices, [2, 4, 5])


def test_cross_scanner_needs_two_scanners() -> None:
    with pytest.raises(ValueError, match="at least two scanners"):
        leave_one_scanner_out(["ge/a", "ge/a"])
