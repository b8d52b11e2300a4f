"""Metrics against values worked out by hand, and against scikit-learn where it agrees."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from medforensics.evaluate.metrics import (
    average_precision,
    compute_metrics,
    confusion_at,
    equal_error_rate,
    metrics_at_threshold,
    roc_auc,
    roc_curve,
    threshold_for_fpr,
    tpr_at_fpr,
)

# A small case with a tie between a manipulated and an authentic score (0.5).
#   manipulated (1): 0.5, 0.7, 0.9        authentic (0): 0.2, 0.5, 0.6
TIE_LABELS = np.array([0, 0, 1, 0, 1, 1])
TIE_SCORES = np.array([0.2, 0.5, 0.5, 0.6, 0.7, 0.9])


def test_roc_auc_counts_ties_as_half() -> None:
    # Pairs (manipulated, authentic), win = 1, tie = 1/2:
    #   0.5 vs 0.2, 0.5, 0.6 -> 1 + 1/2 + 0 = 1.5
    #   0.7 vs all three     -> 3
    #   0.9 vs all three     -> 3
    # AUC = 7.5 / (3 * 3) = 5/6
    assert roc_auc(TIE_LABELS, TIE_SCORES) == pytest.approx(5 / 6)
    assert roc_auc(TIE_LABELS, TIE_SCORES) == pytest.approx(
        skm.roc_auc_score(TIE_LABELS, TIE_SCORES)
    )


def test_roc_curve_points_by_hand() -> None:
    # Thresholds high to low (flag score >= t):
    #   inf: tp 0 fp 0 | 0.9: tp 1 fp 0 | 0.7: tp 2 fp 0 | 0.6: tp 2 fp 1
    #   0.5: tp 3 fp 2 (the tied pair crosses together) | 0.2: tp 3 fp 3
    curve = roc_curve(TIE_LABELS, TIE_SCORES)
    np.testing.assert_allclose(curve.tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(curve.fpr, [0, 0, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(curve.thresholds, [np.inf, 0.9, 0.7, 0.6, 0.5, 0.2])
    # Trapezoid area: 1/3 * 2/3 + 1/3 * (2/3 + 1)/2 + 1/3 * 1 = 4/18 + 5/18 + 6/18 = 5/6,
    # the same as the Mann–Whitney count.
    assert np.trapezoid(curve.tpr, curve.fpr) == pytest.approx(5 / 6)


def test_average_precision_by_hand() -> None:
    # (precision, recall) at each threshold: 0.9 (1, 1/3), 0.7 (1, 2/3), 0.6 (2/3, 2/3),
    # 0.5 (3/5, 1), 0.2 (1/2, 1).
    # AP = sum (R_n - R_{n-1}) P_n = 1/3 * 1 + 1/3 * 1 + 0 * 2/3 + 1/3 * 3/5 + 0 = 13/15
    assert average_precision(TIE_LABELS, TIE_SCORES) == pytest.approx(13 / 15)
    assert average_precision(TIE_LABELS, TIE_SCORES) == pytest.approx(
        skm.average_precision_score(TIE_LABELS, TIE_SCORES)
    )


def test_eer_exactly_on_a_roc_point() -> None:
    # FNR - FPR per threshold: inf 1, 0.9 2/3, 0.7 1/3, 0.6: FNR 1/3 - FPR 1/3 = 0 -> EER = 1/3
    assert equal_error_rate(TIE_LABELS, TIE_SCORES) == pytest.approx(1 / 3)


def test_eer_interpolated_between_roc_points() -> None:
    # manipulated: 0.5, 0.8; authentic: 0.2, 0.5.
    # t = 0.8: FPR 0, FNR 1/2.  t = 0.5: FPR 1/2, FNR 0 (tie crosses together).
    # On the segment FPR = s/2 and FNR = (1 - s)/2; equal at s = 1/2, so EER = 1/4.
    labels = [0, 1, 0, 1]
    scores = [0.2, 0.5, 0.5, 0.8]
    assert equal_error_rate(labels, scores) == pytest.approx(0.25)


def test_perfect_classifier() -> None:
    labels = [0, 0, 1, 1]
    scores = [0.1, 0.2, 0.8, 0.9]
    assert roc_auc(labels, scores) == 1.0
    assert average_precision(labels, scores) == 1.0
    # At t = 0.8 TPR = 1 and FPR = 0, so FNR = FPR = 0.
    assert equal_error_rate(labels, scores) == 0.0
    assert tpr_at_fpr(labels, scores, 0.0) == 1.0


def test_inverted_classifier() -> None:
    labels = [0, 0, 1, 1]
    scores = [0.9, 0.8, 0.2, 0.1]
    # Every manipulated score is below every authentic one: no pair won.
    assert roc_auc(labels, scores) == 0.0
    # (P, R): 0.9 (0, 0), 0.8 (0, 0), 0.2 (1/3, 1/2), 0.1 (1/2, 1)
    # AP = 1/2 * 1/3 + 1/2 * 1/2 = 5/12
    assert average_precision(labels, scores) == pytest.approx(5 / 12)
    assert average_precision(labels, scores) == pytest.approx(
        skm.average_precision_score(labels, scores)
    )
    # At t = 0.8: FPR 1, FNR 1 -> EER = 1.
    assert equal_error_rate(labels, scores) == pytest.approx(1.0)


def test_all_scores_tied_is_chance() -> None:
    labels = [0, 1, 0, 1, 1]
    scores = [0.5] * 5
    # Every pair is a tie: 6 pairs * 1/2 / 6 = 1/2.
    assert roc_auc(labels, scores) == 0.5
    # One threshold: precision 3/5 at recall 1.
    assert average_precision(labels, scores) == pytest.approx(3 / 5)
    # From (FPR 0, FNR 1) straight to (FPR 1, FNR 0): they cross at 1/2.
    assert equal_error_rate(labels, scores) == pytest.approx(0.5)


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_gives_nan_with_a_reason(label: int) -> None:
    labels = [label] * 4
    scores = [0.1, 0.4, 0.6, 0.9]
    assert math.isnan(roc_auc(labels, scores))
    assert math.isnan(average_precision(labels, scores))
    assert math.isnan(equal_error_rate(labels, scores))
    assert math.isnan(tpr_at_fpr(labels, scores, 0.05))
    report = compute_metrics(labels, scores)
    assert math.isnan(report.roc_auc) and math.isnan(report.eer)
    expected = "authentic" if label == 0 else "manipulated"
    assert any(f"all 4 cases are {expected}" in warning for warning in report.warnings)
    # Decision metrics are still defined: with all cases of one class accuracy is well defined.
    # Flagged at 0.5: 0.6 and 0.9 -> 2 of 4.
    assert report.at_threshold.accuracy == pytest.approx(0.5)
    json.dumps(report.to_dict(), allow_nan=False)


def test_empty_input_does_not_crash() -> None:
    report = compute_metrics([], [])
    assert report.n_cases == 0
    assert math.isnan(report.roc_auc)
    assert math.isnan(report.at_threshold.accuracy)
    assert any("no cases" in warning for warning in report.warnings)


def test_threshold_metrics_and_confusion_by_hand() -> None:
    # Flag score >= 0.5: scores 0.5 (label 0), 0.5 (1), 0.6 (0), 0.7 (1), 0.9 (1).
    # tp = 3, fp = 2, tn = 1 (0.2), fn = 0.
    result = metrics_at_threshold(TIE_LABELS, TIE_SCORES, 0.5)
    counts = result.confusion
    assert (counts.tn, counts.fp, counts.fn, counts.tp) == (1, 2, 0, 3)
    assert result.accuracy == pytest.approx(4 / 6)  # (tp + tn) / 6
    assert result.precision == pytest.approx(3 / 5)  # tp / (tp + fp)
    assert result.recall == 1.0  # tp / (tp + fn)
    assert result.specificity == pytest.approx(1 / 3)  # tn / (tn + fp)
    assert result.f1 == pytest.approx(0.75)  # 2 tp / (2 tp + fp + fn) = 6 / 8
    predicted = (TIE_SCORES >= 0.5).astype(int)
    np.testing.assert_array_equal(
        counts.as_array(), skm.confusion_matrix(TIE_LABELS, predicted, labels=[0, 1])
    )
    assert result.f1 == pytest.approx(skm.f1_score(TIE_LABELS, predicted))


def test_precision_is_nan_when_nothing_is_flagged() -> None:
    result = metrics_at_threshold([0, 1], [0.1, 0.2], threshold=0.5)
    assert math.isnan(result.precision)
    assert result.recall == 0.0
    assert result.f1 == 0.0  # 2 * 0 / (0 + 0 + 1)
    report = compute_metrics([0, 1], [0.1, 0.2], threshold=0.5)
    assert any("precision is undefined" in warning for warning in report.warnings)


# Ten authentic scores 0.05, 0.15, ..., 0.95 and four manipulated ones.
AUTHENTIC = np.round(np.arange(10) * 0.1 + 0.05, 2)
MANIPULATED = np.array([0.5, 0.92, 0.97, 0.99])


def test_tpr_at_fpr_by_hand() -> None:
    labels = np.r_[np.zeros(10), np.ones(4)]
    scores = np.r_[AUTHENTIC, MANIPULATED]
    # Thresholds: 0.99 (tp 1, fp 0), 0.97 (tp 2, fp 0), 0.95 (tp 2, fp 1), 0.92 (tp 3, fp 1),
    # 0.85 (tp 3, fp 2) ...
    # FPR <= 0.10 allows fp <= 1 -> best tp = 3 -> TPR 3/4.
    assert tpr_at_fpr(labels, scores, 0.10) == pytest.approx(0.75)
    # FPR <= 0.05 allows fp <= floor(0.5) = 0 -> best tp = 2 -> TPR 1/2.
    assert tpr_at_fpr(labels, scores, 0.05) == pytest.approx(0.5)
    assert tpr_at_fpr(labels, scores, 0.0) == pytest.approx(0.5)
    # FPR <= 0.20 allows fp <= 2: still tp 3 until 0.5 is reached at fp 5.
    assert tpr_at_fpr(labels, scores, 0.20) == pytest.approx(0.75)
    fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    for target in (0.0, 0.05, 0.1, 0.2, 0.5, 1.0):
        assert tpr_at_fpr(labels, scores, target) == pytest.approx(tpr[fpr <= target].max())


def test_threshold_for_fpr_by_hand() -> None:
    # 10% of 10 authentic scores -> 1 may be flagged. Descending: 0.95, 0.85, ...
    # Any threshold <= 0.85 flags two (20%), so the smallest threshold is just above 0.85.
    authentic = AUTHENTIC
    threshold = threshold_for_fpr(authentic, 0.10)
    assert threshold > 0.85
    assert threshold == np.nextafter(0.85, np.inf)
    assert np.mean(authentic >= threshold) == pytest.approx(0.10)
    assert np.mean(authentic >= 0.85) == pytest.approx(0.20)
    # FPR 0: above the highest authentic score.
    assert threshold_for_fpr(AUTHENTIC, 0.0) == np.nextafter(0.95, np.inf)
    # 0.29 * 100 is 28.999999999999996 in floating point; 29 false positives are still allowed.
    hundred = np.arange(100) / 100.0
    assert np.sum(hundred >= threshold_for_fpr(hundred, 0.29)) == 29


def test_threshold_for_fpr_with_ties() -> None:
    # Two authentic scores share the maximum 0.9; a 25% target allows one of four, but any
    # threshold <= 0.9 flags both (50%), so the threshold must clear 0.9 and flags none.
    authentic = [0.9, 0.9, 0.1, 0.2]
    threshold = threshold_for_fpr(authentic, 0.25)
    assert threshold == np.nextafter(0.9, np.inf)
    assert np.mean(np.array(authentic) >= threshold) == 0.0


def test_threshold_for_fpr_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one authentic score"):
        threshold_for_fpr([], 0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        threshold_for_fpr([0.1], 1.0)


def test_matches_sklearn_on_random_data_with_ties() -> None:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 300)
    # One decimal place: many ties within and across classes.
    scores = np.round(np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1), 1)
    assert roc_auc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores))
    assert average_precision(labels, scores) == pytest.approx(
        skm.average_precision_score(labels, scores)
    )
    curve = roc_curve(labels, scores)
    fpr, tpr, thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(curve.fpr, fpr)
    np.testing.assert_allclose(curve.tpr, tpr)
    np.testing.assert_allclose(curve.thresholds[1:], thresholds[1:])
    # EER lies between the FPR and FNR of the ROC point nearest to the crossing.
    eer = equal_error_rate(labels, scores)
    nearest = np.argmin(np.abs((1 - tpr) - fpr))
    low, high = sorted((fpr[nearest], 1 - tpr[nearest]))
    assert low - 1e-12 <= eer <= high + 1e-12


def test_confusion_at_counts_equal_scores_as_flagged() -> None:
    counts = confusion_at([1, 0], [0.5, 0.5], threshold=0.5)
    assert (counts.tp, counts.fp) == (1, 1)


def test_compute_metrics_report() -> None:
    report = compute_metrics(TIE_LABELS, TIE_SCORES, threshold=0.5, n_bins=2)
    assert (report.n_cases, report.n_manipulated, report.n_authentic) == (6, 3, 3)
    assert report.roc_auc == pytest.approx(5 / 6)
    assert report.average_precision == pytest.approx(13 / 15)
    assert report.eer == pytest.approx(1 / 3)
    assert set(report.tpr_at_fpr) == {"0.01", "0.05"}
    # With 3 authentic cases FPR steps are 1/3: both targets mean FPR 0 -> TPR 2/3.
    assert report.tpr_at_fpr["0.01"] == pytest.approx(2 / 3)
    assert any("steps of 1/3" in warning for warning in report.warnings)
    # 2 bins: (0, 0.5] holds 0.2, 0.5, 0.5 (mean 0.4, fraction 1/3) -> gap 1/15;
    # (0.5, 1] holds 0.6, 0.7, 0.9 (mean 11/15, fraction 2/3) -> gap 1/15.
    # ECE = 3/6 * 1/15 + 3/6 * 1/15 = 1/15.
    assert report.ece == pytest.approx(1 / 15)
    as_json = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert as_json["at_threshold"]["confusion"] == {"tn": 1, "fp": 2, "fn": 0, "tp": 3}


def test_compute_metrics_skips_ece_for_unbounded_scores() -> None:
    report = compute_metrics([0, 1], [-3.0, 4.0], threshold=0.0)
    assert report.roc_auc == 1.0
    assert math.isnan(report.ece) and report.reliability is None
    assert any("ECE" in warning for warning in report.warnings)


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 1], [0.1], "same length"),
        ([0, 2], [0.1, 0.2], "0 \\(authentic\\) or 1"),
        ([0, 1], [0.1, float("nan")], "NaN or infinite"),
        ([[0, 1]], [[0.1, 0.2]], "1-D"),
    ],
)
def test_bad_input_is_explained(labels: object, scores: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        roc_auc(labels, scores)  # type: ignore[arg-type]
