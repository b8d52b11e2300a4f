"""Patient-level splits, the cross-scanner protocol, and the leakage check that guards both.

Numbers that mix one patient's slices into training and test measure memory, not detection.
Every split here is made over patients, is reproducible from its seed, and is checked with
``check_disjoint`` before it is returned.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

#: part names of a ``PatientSplit``, in the order of ``fractions``
PARTS = ("train", "val", "test")

# Ties in the largest-remainder rounding go to test first: an empty test side hurts most.
_TIE_PRIORITY = {"test": 0, "train": 1, "val": 2}

_LISTED_PATIENTS = 10


class LeakageError(ValueError):
    """Raised when the same patient appears on both sides of a split.

    Attributes:
        patients: the patients found on both sides, sorted.
    """

    def __init__(self, patients: Sequence[str], sides: tuple[str, str] = ("train", "test")):
        self.patients = tuple(sorted(patients))
        listed = ", ".join(self.patients[:_LISTED_PATIENTS])
        more = len(self.patients) - _LISTED_PATIENTS
        tail = f" and {more} more" if more > 0 else ""
        super().__init__(
            f"{len(self.patients)} patient(s) appear in both {sides[0]} and {sides[1]}: "
            f"{listed}{tail}. Split by patient (split_by_patient) so that no patient's images "
            "are on both sides; results on a leaky split overstate performance."
        )


def check_disjoint(
    train_patients: Sequence[Hashable],
    test_patients: Sequence[Hashable],
    *,
    sides: tuple[str, str] = ("train", "test"),
) -> None:
    """Refuse a split in which a patient is on both sides.

    Args:
        train_patients: patient IDs on the first side (repeats allowed, e.g. one per slice).
        test_patients: patient IDs on the second side.
        sides: names of the two sides, for the message.

    Raises:
        LeakageError: naming every patient found on both sides.
    """
    shared = {str(patient) for patient in train_patients} & {
        str(patient) for patient in test_patients
    }
    if shared:
        raise LeakageError(sorted(shared), sides)


@dataclass(frozen=True)
class PatientSplit:
    """Which patients go where.

    Attributes:
        train: patient IDs for training, sorted.
        val: patient IDs for validation (calibration, thresholds), sorted.
        test: patient IDs held out for the reported numbers, sorted.
        seed: the seed that produced the split.
        warnings: problems worth telling people (an empty part, a class missing from test).
    """

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    seed: int
    warnings: tuple[str, ...] = ()

    def part_of(self, patient_ids: Sequence[Hashable]) -> np.ndarray:
        """The part name (``train``/``val``/``test``) of each item, from its patient ID.

        Raises:
            KeyError: when an item's patient is in no part.
        """
        where = {patient: part for part in PARTS for patient in getattr(self, part)}
        try:
            return np.array([where[str(patient)] for patient in patient_ids], dtype=object)
        except KeyError as exc:
            raise KeyError(
                f"patient {exc.args[0]!r} is not in this split; split all items together"
            ) from None

    def indices(self, patient_ids: Sequence[Hashable]) -> dict[str, np.ndarray]:
        """Item indices of each part, for indexing arrays aligned with ``patient_ids``."""
        parts = self.part_of(patient_ids)
        return {part: np.flatnonzero(parts == part) for part in PARTS}


def split_by_patient(
    patient_ids: Sequence[Hashable],
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    *,
    labels: ArrayLike | None = None,
) -> PatientSplit:
    """Split patients into train/val/test, stratified by patient label when labels are given.

    The result depends only on the set of patients (and their labels) and the seed, not on the
    order of the items. A patient is labelled manipulated when any of its items is, and each
    class is divided in the given fractions separately (largest-remainder rounding), so both
    classes reach the test side whenever a class has enough patients.

    Args:
        patient_ids: one patient ID per item (slice, series...); repeats are expected.
        fractions: shares of patients for train, val and test; non-negative, summing to 1.
        seed: seed of the shuffle.
        labels: optional 0/1 label per item, for stratification.

    Raises:
        ValueError: on bad fractions, no items, or labels of the wrong length.
    """
    _check_fractions(fractions)
    patients = [str(patient) for patient in patient_ids]
    if not patients:
        raise ValueError("split_by_patient needs at least one patient ID; none were given")
    patient_label = _patient_labels(patients, labels)
    rng = np.random.default_rng(seed)
    assigned: dict[str, list[str]] = {part: [] for part in PARTS}
    strata = sorted(set(patient_label.values()))
    for stratum in strata:
        members = sorted(patient for patient, label in patient_label.items() if label == stratum)
        shuffled = [members[index] for index in rng.permutation(len(members))]
        start = 0
        for part, count in zip(PARTS, _apportion(len(members), fractions), strict=True):
            assigned[part].extend(shuffled[start : start + count])
            start += count
    split = PatientSplit(
        train=tuple(sorted(assigned["train"])),
        val=tuple(sorted(assigned["val"])),
        test=tuple(sorted(assigned["test"])),
        seed=seed,
        warnings=tuple(_split_warnings(assigned, patient_label, fractions, labels is not None)),
    )
    check_disjoint(split.train, split.test)
    check_disjoint(split.train, split.val, sides=("train", "val"))
    check_disjoint(split.val, split.test, sides=("val", "test"))
    return split


def scanner_key(manufacturer: str | None, model: str | None) -> str:
    """Group key for the cross-scanner protocol: ``"manufacturer/model"``, normalised.

    Case and repeated whitespace are ignored (``"SIEMENS"`` and ``"Siemens "`` are one vendor);
    a missing value becomes ``"unknown"``.

    Args:
        manufacturer: DICOM Manufacturer (0008,0070).
        model: DICOM ManufacturerModelName (0008,1090).
    """

    def clean(value: str | None) -> str:
        text = " ".join((value or "").split()).lower()
        return text or "unknown"

    return f"{clean(manufacturer)}/{clean(model)}"


@dataclass(frozen=True)
class ScannerFold:
    """One fold of leave-one-scanner-out.

    Attributes:
        held_out: the scanner key whose items form the test side.
        train_indices: item indices for training (other scanners, minus held-out patients).
        test_indices: item indices of the held-out scanner.
        dropped_patients: patients scanned on the held-out scanner and elsewhere; their other
            items were left out of training so that no patient is on both sides.
    """

    held_out: str
    train_indices: np.ndarray
    test_indices: np.ndarray
    dropped_patients: tuple[str, ...] = ()


def leave_one_scanner_out(
    scanner_keys: Sequence[str], patient_ids: Sequence[Hashable] | None = None
) -> list[ScannerFold]:
    """One fold per scanner: test on that scanner, train on the others.

    Args:
        scanner_keys: one key per item, e.g. from ``scanner_key``.
        patient_ids: optional patient ID per item; when given, a patient seen on the held-out
            scanner is removed from that fold's training side.

    Raises:
        ValueError: with fewer than two scanners, or when the two sequences differ in length.
    """
    keys = [str(key) for key in scanner_keys]
    scanners = sorted(set(keys))
    if len(scanners) < 2:
        raise ValueError(
            f"the cross-scanner protocol needs items from at least two scanners; found "
            f"{scanners or 'none'}. Use the in-distribution protocol instead."
        )
    patients = [str(patient) for patient in patient_ids] if patient_ids is not None else None
    if patients is not None and len(patients) != len(keys):
        raise ValueError(
            f"need one patient ID per item; got {len(patients)} IDs for {len(keys)} items"
        )
    key_array = np.array(keys, dtype=object)
    folds = []
    for scanner in scanners:
        test_mask = key_array == scanner
        train_mask = ~test_mask
        dropped: tuple[str, ...] = ()
        if patients is not None:
            patient_array = np.array(patients, dtype=object)
            held_out_patients = set(patient_array[test_mask])
            crossing = train_mask & np.isin(patient_array, list(held_out_patients))
            dropped = tuple(sorted(set(patient_array[crossing])))
            train_mask &= ~crossing
            check_disjoint(patient_array[train_mask], patient_array[test_mask])
        folds.append(
            ScannerFold(
                held_out=scanner,
                train_indices=np.flatnonzero(train_mask),
                test_indices=np.flatnonzero(test_mask),
                dropped_patients=dropped,
            )
        )
    return folds


def _check_fractions(fractions: tuple[float, float, float]) -> None:
    if len(fractions) != len(PARTS):
        raise ValueError(
            f"fractions must give train, val and test shares (3 numbers), got {fractions}; "
            "use 0 for an unused part, e.g. (0.8, 0.0, 0.2)"
        )
    if any(share < 0 for share in fractions) or not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}")


def _patient_labels(patients: list[str], labels: ArrayLike | None) -> dict[str, int]:
    """Patient -> 1 if any of its items is manipulated; everyone 0 when there are no labels."""
    if labels is None:
        return dict.fromkeys(patients, 0)
    label_array = np.asarray(labels).ravel()
    if label_array.size != len(patients):
        raise ValueError(
            f"need one label per item; got {label_array.size} labels for {len(patients)} items"
        )
    if not np.isin(label_array, (0, 1)).all():
        raise ValueError("labels must be 0 (authentic) or 1 (manipulated)")
    patient_label: dict[str, int] = {}
    for patient, label in zip(patients, label_array.tolist(), strict=True):
        patient_label[patient] = max(patient_label.get(patient, 0), int(label))
    return patient_label


def _apportion(count: int, fractions: tuple[float, float, float]) -> list[int]:
    """Split ``count`` into integer parts close to ``count * fractions`` (largest remainder)."""
    exact = [count * share for share in fractions]
    sizes = [math.floor(value + 1e-9) for value in exact]
    leftover = max(count - sum(sizes), 0)
    by_remainder = sorted(
        range(len(PARTS)),
        key=lambda index: (-(exact[index] - sizes[index]), _TIE_PRIORITY[PARTS[index]]),
    )
    for index in by_remainder[:leftover]:
        sizes[index] += 1
    return sizes


def _split_warnings(
    assigned: dict[str, list[str]],
    patient_label: dict[str, int],
    fractions: tuple[float, float, float],
    stratified: bool,
) -> list[str]:
    warnings = []
    for part, share in zip(PARTS, fractions, strict=True):
        if share > 0 and not assigned[part]:
            warnings.append(
                f"the {part} part is empty: {len(patient_label)} patient(s) are too few for "
                f"fractions {fractions}"
            )
    if stratified and assigned["test"]:
        test_classes = {patient_label[patient] for patient in assigned["test"]}
        for label, name in ((0, "authentic"), (1, "manipulated")):
            if label not in test_classes:
                warnings.append(f"the test part has no {name} patient; AUC will be undefined")
    return warnings
