"""Detection metrics from labels (0 authentic, 1 manipulated) and scores (higher = more suspect).

Definitions, chosen to match the literature and scikit-learn where it has the same metric:

* ROC-AUC is the Mann–Whitney statistic: the probability that a random manipulated case scores
  above a random authentic one, ties counting 1/2. It equals the trapezoidal area under the ROC
  curve built from distinct score thresholds.
* Average precision is the step-wise sum ``sum_n (R_n - R_{n-1}) * P_n`` over distinct
  thresholds, as ``sklearn.metrics.average_precision_score`` (no interpolation).
* EER is the error rate where the false-positive rate equals the false-negative rate, linearly
  interpolated between the two ROC points that straddle it.
* A case is flagged when ``score >= threshold``, the same rule as ``OperatingPoint``.

Ranking metrics (AUC, AP, EER, TPR at FPR) are undefined when only one class is present; they
return NaN, and ``compute_metrics`` records why in ``MetricReport.warnings``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import rankdata

from medforensics.evaluate._inputs import as_labels_and_scores, single_class_reason
from medforensics.evaluate.calibration import ReliabilityDiagram, reliability_diagram

#: FPR targets reported by ``compute_metrics``
REPORTED_FPRS = (0.01, 0.05)

# k / n <= target is tested as k <= floor(target * n + _COUNT_SLACK), so that 0.29 * 100
# (28.999999999999996 in floating point) still allows 29 false positives.
_COUNT_SLACK = 1e-9


@dataclass(frozen=True)
class RocCurve:
    """ROC points, one per distinct score plus the origin.

    Attributes:
        fpr: false-positive rate at each threshold, non-decreasing, from 0 to 1.
        tpr: true-positive rate at each threshold, non-decreasing, from 0 to 1.
        thresholds: score thresholds, decreasing; the first is ``inf`` (nothing flagged).
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts at one threshold; ``as_array`` gives scikit-learn's ``[[tn, fp], [fn, tp]]``."""

    tn: int
    fp: int
    fn: int
    tp: int

    def as_array(self) -> np.ndarray:
        """Rows are the true class (authentic, manipulated), columns the predicted class."""
        return np.array([[self.tn, self.fp], [self.fn, self.tp]], dtype=np.int64)


@dataclass(frozen=True)
class ThresholdMetrics:
    """Decision metrics when cases with ``score >= threshold`` are called manipulated.

    Rates whose denominator is zero (precision with nothing flagged, recall with no manipulated
    cases, specificity with no authentic cases) are NaN rather than a made-up 0 or 1.
    """

    threshold: float
    accuracy: float
    precision: float
    recall: float
    specificity: float
    f1: float
    confusion: ConfusionMatrix


@dataclass
class MetricReport:
    """Every headline metric for one set of cases (one level: slice, series or study).

    Attributes:
        n_cases: number of cases.
        n_manipulated: cases labelled 1.
        n_authentic: cases labelled 0.
        roc_auc: Mann–Whitney ROC-AUC; NaN with a single class.
        average_precision: step-wise AP; NaN with a single class.
        eer: interpolated equal error rate; NaN with a single class.
        tpr_at_fpr: TPR at each FPR in ``REPORTED_FPRS`` (keys ``"0.01"``, ``"0.05"``).
        at_threshold: accuracy, precision, recall, F1 and confusion at ``threshold``.
        ece: expected calibration error; NaN when the scores are not in [0, 1].
        reliability: reliability-diagram data, None when the scores are not in [0, 1].
        warnings: why a metric is NaN or should be read with care, for people.
    """

    n_cases: int
    n_manipulated: int
    n_authentic: int
    roc_auc: float
    average_precision: float
    eer: float
    tpr_at_fpr: dict[str, float]
    at_threshold: ThresholdMetrics
    ece: float
    reliability: ReliabilityDiagram | None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form; NaN is written as None."""
        as_dict = asdict(self)
        as_dict["reliability"] = None if self.reliability is None else self.reliability.to_dict()
        return {key: _json_safe(value) for key, value in as_dict.items()}


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> RocCurve:
    """ROC curve with one point per distinct score (no points dropped), from (0, 0) to (1, 1).

    With a single class the undefined rate (FPR with no authentic cases, TPR with no manipulated
    ones) is NaN throughout.

    Args:
        labels: 0 (authentic) or 1 (manipulated) per case.
        scores: higher means more likely manipulated.
    """
    label_array, score_array = as_labels_and_scores(labels, scores)
    true_positives, false_positives, thresholds = _counts_per_threshold(label_array, score_array)
    n_manipulated = int(label_array.sum())
    n_authentic = label_array.size - n_manipulated
    tps = np.r_[0, true_positives].astype(np.float64)
    fps = np.r_[0, false_positives].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = tps / n_manipulated if n_manipulated else np.full_like(tps, np.nan)
        fpr = fps / n_authentic if n_authentic else np.full_like(fps, np.nan)
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=np.r_[np.inf, thresholds])


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """ROC-AUC as the Mann–Whitney statistic (ties count 1/2); NaN with a single class.

    Args:
        labels: 0 (authentic) or 1 (manipulated) per case.
        scores: higher means more likely manipulated.
    """
    label_array, score_array = as_labels_and_scores(labels, scores)
    if single_class_reason(label_array) is not None:
        return math.nan
    # Average ranks give tied pairs half a win each.
    ranks = rankdata(score_array, method="average")
    n_manipulated = int(label_array.sum())
    n_authentic = label_array.size - n_manipulated
    rank_sum = float(ranks[label_array == 1].sum())
    mann_whitney_u = rank_sum - n_manipulated * (n_manipulated + 1) / 2.0
    return mann_whitney_u / (n_manipulated * n_authentic)


def average_precision(labels: ArrayLike, scores: ArrayLike) -> float:
    """Step-wise average precision, ``sum_n (R_n - R_{n-1}) * P_n``; NaN with a single class.

    With only manipulated cases AP would be a trivial 1, so it is NaN as well: a benchmark
    number that cannot fail says nothing.

    Args:
        labels: 0 (authentic) or 1 (manipulated) per case.
        scores: higher means more likely manipulated.
    """
    label_array, score_array = as_labels_and_scores(labels, scores)
    if single_class_reason(label_array) is not None:
        return math.nan
    true_positives, false_positives, _ = _counts_per_threshold(label_array, score_array)
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / true_positives[-1]
    recall_steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_steps * precision))


def equal_error_rate(labels: ArrayLike, scores: ArrayLike) -> float:
    """Error rate where FPR = FNR, interpolated along the ROC curve; NaN with a single class.

    Args:
        labels: 0 (authentic) or 1 (manipulated) per case.
        scores: higher means more likely manipulated.
    """
    label_array, score_array = as_labels_and_scores(labels, scores)
    if single_class_reason(label_array) is not None:
        return math.nan
    curve = roc_curve(label_array, score_array)
    # gap = FNR - FPR falls from 1 (nothing flagged) to -1 (everything flagged).
    gap = (1.0 - curve.tpr) - curve.fpr
    crossing = int(np.argmax(gap <= 0.0))
    if gap[crossing] == 0.0:
        return float(curve.fpr[crossing])
    before, after = gap[crossing - 1], gap[crossing]
    step = before / (before - after)
    fpr_before, fpr_after = curve.fpr[crossing - 1], curve.fpr[crossing]
    return float(fpr_before + step * (fpr_after - fpr_before))


def tpr_at_fpr(labels: ArrayLike, scores: ArrayLike, target_fpr: float) -> float:
    """Largest TPR among ROC thresholds whose FPR is at most ``target_fpr``.

    NaN with a single class. With ``n`` authentic cases the FPR moves in steps of ``1/n``, so a
    1% target needs at least 100 authentic cases to mean anything.

    Args:
        labels: 0 (authentic) or 1 (manipulated) per case.
        scores: higher means more likely manipulated.
        target_fpr: the highest acceptable false-positive rate, in [0, 1].
    """
    _check_rate(target_fpr, "target_fpr")
    label_array, score_array = as_labels_and_scores(labels, scores)
    if single_class_reason(label_array) is not None:
        return math.nan
    true_positives, false_positives, _ = _counts_per_threshold(label_array, score_array)
    n_manipulated = int(label_array.sum())
    n_authentic = label_array.size - n_manipulated
    allowed = math.floor(target_fpr * n_authentic + _COUNT_SLACK)
    within = false_positives <= allowed
    best = int(true_positives[within].max()) if within.any() else 0
    return best / n_manipulated


def threshold_for_fpr(authentic_scores: ArrayLike, target_fpr: float) -> float:
    """Smallest threshold at which at most ``target_fpr`` of authentic scores are ``>=`` it.

    With ``k = floor(target_fpr * n)`` false positives allowed, every threshold up to the
    ``(k + 1)``-th largest authentic score flags too many, so the answer is the next float above
    that score. It can exceed 1 when more than ``k`` authentic scores are exactly 1: no threshold
    in the score range meets the target then, and the caller should say so.

    Args:
        authentic_scores: scores of authentic cases only.
        target_fpr: the highest acceptable false-positive rate, in [0, 1).

    Raises:
        ValueError: when there are no authentic scores or the target is outside [0, 1).
    """
    scores = np.asarray(authentic_scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("threshold_for_fpr needs at least one authentic score; none were given")
    if not np.isfinite(scores).all():
        raise ValueError("authentic scores contain NaN or infinite values; remove them first")
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(
            f"target_fpr must be in [0, 1), got {target_fpr}; at 1 every threshold qualifies"
        )
    allowed = math.floor(target_fpr * scores.size + _COUNT_SLACK)
    descending = np.sort(scores)[::-1]
    first_excluded = descending[allowed]
    return float(np.nextafter(first_excluded, np.inf))


def confusion_at(labels: ArrayLike, scores: ArrayLike, threshold: float) -> ConfusionMatrix:
    """Confusion counts when ``score >= threshold`` is called manipulated.

    Args:
        labels: 0 (authentic) or 1 (manipulated) per case.
        scores: higher means more likely manipulated.
        threshold: the decision threshold.
    """
    label_array, score_array = as_labels_and_scores(labels, scores)
    flagged = score_array >= threshold
    manipulated = label_array == 1
    return ConfusionMatrix(
        tn=int(np.sum(~flagged & ~manipulated)),
        fp=int(np.sum(flagged & ~manipulated)),
        fn=int(np.sum(~flagged & manipulated)),
        tp=int(np.sum(flagged & manipulated)),
    )


def metrics_at_threshold(
    labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5
) -> ThresholdMetrics:
    """Accuracy, precision, recall, specificity and F1 at one threshold.

    Args:
        labels: 0 (authentic) or 1 (manipulated) per case.
        scores: higher means more likely manipulated.
        threshold: cases with ``score >= threshold`` are called manipulated.
    """
    counts = confusion_at(labels, scores, threshold)
    total = counts.tn + counts.fp + counts.fn + counts.tp
    return ThresholdMetrics(
        threshold=float(threshold),
        accuracy=_ratio(counts.tp + counts.tn, total),
        precision=_ratio(counts.tp, counts.tp + counts.fp),
        recall=_ratio(counts.tp, counts.tp + counts.fn),
        specificity=_ratio(counts.tn, counts.tn + counts.fp),
        f1=_ratio(2 * counts.tp, 2 * counts.tp + counts.fp + counts.fn),
        confusion=counts,
    )


def compute_metrics(
    labels: ArrayLike, scores: ArrayLike, threshold: float = 0.5, n_bins: int = 10
) -> MetricReport:
    """Every headline metric in one report; never raises for single-class or uncalibrated input.

    Args:
        labels: 0 (authentic) or 1 (manipulated) per case.
        scores: calibrated probability of manipulation per case (ECE needs [0, 1]).
        threshold: decision threshold for accuracy, precision, recall, F1 and the confusion.
        n_bins: equal-width bins for ECE and the reliability diagram.
    """
    label_array, score_array = as_labels_and_scores(labels, scores)
    warnings: list[str] = []
    n_manipulated = int(label_array.sum())
    n_authentic = label_array.size - n_manipulated
    reason = single_class_reason(label_array)
    if reason is not None:
        warnings.append(f"ROC-AUC, AP, EER and TPR@FPR are undefined (NaN): {reason}")
    fpr_keys = {f"{target:g}": target for target in REPORTED_FPRS}
    for key, target in fpr_keys.items():
        if reason is None and n_authentic * target < 1:
            warnings.append(
                f"TPR at FPR {key} rests on {n_authentic} authentic cases: FPR moves in steps of "
                f"1/{n_authentic}, so this is TPR at FPR 0"
            )
    at_threshold = metrics_at_threshold(label_array, score_array, threshold)
    if at_threshold.confusion.tp + at_threshold.confusion.fp == 0:
        warnings.append(f"no case scored >= {threshold:g}: precision is undefined (NaN)")
    reliability: ReliabilityDiagram | None = None
    ece = math.nan
    if label_array.size and (score_array.min() < 0.0 or score_array.max() > 1.0):
        warnings.append("scores are not probabilities in [0, 1]: ECE and reliability skipped")
    else:
        reliability = reliability_diagram(label_array, score_array, n_bins)
        ece = reliability.ece
    return MetricReport(
        n_cases=int(label_array.size),
        n_manipulated=n_manipulated,
        n_authentic=n_authentic,
        roc_auc=roc_auc(label_array, score_array),
        average_precision=average_precision(label_array, score_array),
        eer=equal_error_rate(label_array, score_array),
        tpr_at_fpr={
            key: tpr_at_fpr(label_array, score_array, target) for key, target in fpr_keys.items()
        },
        at_threshold=at_threshold,
        ece=ece,
        reliability=reliability,
        warnings=warnings,
    )


def _counts_per_threshold(
    labels: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative TP and FP counts at each distinct score, thresholds in decreasing order."""
    if scores.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    sorted_labels = labels[order].astype(np.int64)
    # The last index of each run of equal scores: all tied cases cross the threshold together.
    last_of_run = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    true_positives = np.cumsum(sorted_labels)[last_of_run]
    false_positives = last_of_run + 1 - true_positives
    return true_positives, false_positives, sorted_scores[last_of_run]


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def _check_rate(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a rate in [0, 1], got {value}")


def _json_safe(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value
