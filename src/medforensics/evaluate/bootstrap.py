"""Percentile bootstrap confidence intervals, resampling cases or whole groups (patients).

Slices of one patient are not independent: resampling them one by one makes an interval look
tighter than the data allow. Pass ``groups`` (patient IDs) and whole patients are resampled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from medforensics.evaluate._inputs import as_labels_and_scores

#: a metric such as ``roc_auc``: ``(labels, scores) -> float``, NaN when undefined
MetricFn = Callable[[np.ndarray, np.ndarray], float]

# Fewer defined resamples than this fraction of ``n`` makes the interval untrustworthy.
_MIN_VALID_FRACTION = 0.9


@dataclass(frozen=True)
class ConfidenceInterval:
    """A metric with its bootstrap interval.

    Attributes:
        estimate: the metric on all the data.
        low: lower percentile bound; NaN when no resample gave a defined value.
        high: upper percentile bound; NaN when no resample gave a defined value.
        confidence: the nominal coverage, e.g. 0.95.
        n_resamples: resamples drawn.
        n_valid: resamples where the metric was defined (not NaN), the ones the bounds use.
        resampled: ``"cases"`` or ``"groups"``.
        warnings: why the interval should be read with care, for people.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    n_valid: int
    resampled: str
    warnings: tuple[str, ...] = ()


def bootstrap_ci(
    metric_fn: MetricFn,
    labels: ArrayLike,
    scores: ArrayLike,
    n: int = 1000,
    *,
    rng: np.random.Generator,
    groups: ArrayLike | None = None,
    confidence: float = 0.95,
) -> ConfidenceInterval:
    """Percentile bootstrap interval for ``metric_fn(labels, scores)``.

    Resamples where the metric is undefined (NaN, e.g. a draw with a single class) are left
    out of the bounds and counted in ``n_valid``.

    Args:
        metric_fn: ``(labels, scores) -> float``, e.g. ``roc_auc``.
        labels: 0 (authentic) or 1 (manipulated) per case.
        scores: higher means more likely manipulated.
        n: number of resamples.
        rng: the random generator; the same seed gives the same interval.
        groups: one group key (patient ID) per case; when given, whole groups are resampled.
        confidence: nominal coverage in (0, 1).

    Raises:
        TypeError: when ``rng`` is not a ``numpy.random.Generator``.
        ValueError: when there are no cases, ``n < 1``, ``confidence`` is outside (0, 1), or
            ``groups`` does not have one key per case.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (e.g. np.random.default_rng(seed)), got "
            f"{type(rng).__name__}"
        )
    if n < 1:
        raise ValueError(f"n (number of resamples) must be at least 1, got {n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    label_array, score_array = as_labels_and_scores(labels, scores)
    if label_array.size == 0:
        raise ValueError("cannot bootstrap zero cases; check that the evaluation set is not empty")
    members = _group_members(groups, label_array.size)
    estimate = float(metric_fn(label_array, score_array))
    values = np.empty(n, dtype=np.float64)
    for draw in range(n):
        if members is None:
            index = rng.integers(0, label_array.size, label_array.size)
        else:
            picked = rng.integers(0, len(members), len(members))
            index = np.concatenate([members[group] for group in picked])
        values[draw] = metric_fn(label_array[index], score_array[index])
    valid = values[~np.isnan(values)]
    warnings: list[str] = []
    unit = "cases" if members is None else "groups"
    if valid.size == 0:
        warnings.append(f"the metric was undefined in all {n} resamples; no interval")
        low = high = math.nan
    else:
        alpha = 1.0 - confidence
        low, high = (float(bound) for bound in np.quantile(valid, [alpha / 2, 1 - alpha / 2]))
        if valid.size < _MIN_VALID_FRACTION * n:
            warnings.append(
                f"the metric was undefined in {n - valid.size} of {n} resamples (too few "
                f"{unit} of one class); the interval covers the rest only"
            )
    return ConfidenceInterval(
        estimate=estimate,
        low=low,
        high=high,
        confidence=confidence,
        n_resamples=n,
        n_valid=int(valid.size),
        resampled=unit,
        warnings=tuple(warnings),
    )


def _group_members(groups: ArrayLike | None, n_cases: int) -> list[np.ndarray] | None:
    """Case indices of each group, groups in sorted key order; None for case resampling."""
    if groups is None:
        return None
    group_array = np.asarray(groups)
    if group_array.ndim != 1 or group_array.size != n_cases:
        raise ValueError(
            f"groups must give one key per case ({n_cases}); got shape {group_array.shape}"
        )
    _, group_index = np.unique(group_array, return_inverse=True)
    order = np.argsort(group_index, kind="stable")
    boundaries = np.flatnonzero(np.diff(group_index[order])) + 1
    return np.split(order, boundaries)
