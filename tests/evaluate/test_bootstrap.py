"""Bootstrap intervals: reproducible, patient-level when asked, honest about undefined draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medforensics.evaluate.bootstrap import bootstrap_ci
from medforensics.evaluate.metrics import roc_auc


def _noisy_set(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(rng.integers(0, 2, 30), 4)  # 30 patients, 4 slices each
    scores = rng.normal(labels * 1.0, 1.0)
    patients = np.repeat([f"p{index:02d}" for index in range(30)], 4)
    return labels, scores, patients


def test_same_seed_same_interval() -> None:
    labels, scores, _ = _noisy_set()
    first = bootstrap_ci(roc_auc, labels, scores, n=200, rng=np.random.default_rng(1))
    second = bootstrap_ci(roc_auc, labels, scores, n=200, rng=np.random.default_rng(1))
    assert (first.low, first.high) == (second.low, second.high)
    assert first.low <= first.estimate <= first.high
    assert first.estimate == pytest.approx(roc_auc(labels, scores))
    assert first.resampled == "cases"


def test_perfect_classifier_interval_is_a_point() -> None:
    labels = [0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]
    interval = bootstrap_ci(roc_auc, labels, scores, n=300, rng=np.random.default_rng(0))
    # Every defined resample is still perfectly separated.
    assert (interval.low, interval.estimate, interval.high) == (1.0, 1.0, 1.0)
    # P(one class only) = 2 * (1/2)^6 = 1/32, so about 9 of 300 draws are undefined.
    assert 0 < interval.n_resamples - interval.n_valid < 30


def test_groups_are_resampled_whole() -> None:
    # Each patient has two identical cases; a draw that keeps patients whole holds every
    # score an even number of times.
    labels = np.array([0, 0, 1, 1, 0, 0, 1, 1, 0, 0])
    scores = np.array([0.1, 0.1, 0.9, 0.9, 0.3, 0.3, 0.6, 0.6, 0.4, 0.4])
    patients = np.array(["a", "a", "b", "b", "c", "c", "d", "d", "e", "e"])

    def whole_patients(_: np.ndarray, drawn_scores: np.ndarray) -> float:
        _, counts = np.unique(drawn_scores, return_counts=True)
        return float(np.all(counts % 2 == 0))

    grouped = bootstrap_ci(
        whole_patients, labels, scores, n=100, rng=np.random.default_rng(0), groups=patients
    )
    assert grouped.low == grouped.high == 1.0
    assert grouped.resampled == "groups"
    by_case = bootstrap_ci(whole_patients, labels, scores, n=100, rng=np.random.default_rng(0))
    assert by_case.low == 0.0


def test_grouped_interval_is_wider_for_correlated_slices() -> None:
    labels, scores, patients = _noisy_set(seed=4)
    # Make slices of a patient strongly correlated: the patient's mean decides.
    scores = np.repeat(scores.reshape(30, 4).mean(axis=1), 4)
    by_case = bootstrap_ci(roc_auc, labels, scores, n=400, rng=np.random.default_rng(2))
    by_patient = bootstrap_ci(
        roc_auc, labels, scores, n=400, rng=np.random.default_rng(2), groups=patients
    )
    assert by_patient.high - by_patient.low > by_case.high - by_case.low


def test_single_class_has_no_interval() -> None:
    interval = bootstrap_ci(roc_auc, [0, 0, 0], [0.1, 0.2, 0.3], n=50, rng=np.random.default_rng(0))
    assert math.isnan(interval.estimate)
    assert math.isnan(interval.low) and math.isnan(interval.high)
    assert interval.n_valid == 0
    assert "undefined in all 50" in interval.warnings[0]


def test_bad_arguments_are_explained() -> None:
    with pytest.raises(TypeError, match="default_rng"):
        bootstrap_ci(roc_auc, [0, 1], [0.1, 0.9], rng=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one key per case"):
        bootstrap_ci(roc_auc, [0, 1], [0.1, 0.9], rng=np.random.default_rng(0), groups=["a"])
    with pytest.raises(ValueError, match="zero cases"):
        bootstrap_ci(roc_auc, [], [], rng=np.random.default_rng(0))
