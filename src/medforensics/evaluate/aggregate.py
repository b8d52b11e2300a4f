"""Aggregate per-slice scores to series and study level, the way DeepfakeBench goes frame → video.

A series (or study) is manipulated when any of its slices is, so labels aggregate by ``max``.
Scores aggregate by a rule found by name:

* ``max``: the most suspicious slice decides; sensitive to one noisy slice.
* ``mean``: average over slices; dilutes a lesion that spans few slices of a long series.
* ``topk_mean``: mean of the ``k`` highest slice scores; between the two.
* ``noisy_or``: ``1 - prod(1 - p)``, the chance that at least one slice is manipulated if slices
  were independent; needs probabilities and saturates towards 1 on long series.

To go slice → study, aggregate the slices with study keys directly, or aggregate the series
scores with the study key of each series; for ``max`` both give the same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from numpy.typing import ArrayLike

from medforensics.evaluate._inputs import as_labels_and_scores

#: ``scores of one group -> one score``
Aggregator = Callable[[np.ndarray], float]


def max_score(scores: np.ndarray) -> float:
    """The highest score."""
    return float(np.max(scores))


def mean_score(scores: np.ndarray) -> float:
    """The arithmetic mean."""
    return float(np.mean(scores))


def top_k_mean(scores: np.ndarray, k: int = 3) -> float:
    """Mean of the ``k`` highest scores (of all of them when there are fewer than ``k``).

    Args:
        scores: the scores of one group.
        k: how many of the highest scores to average.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    highest = np.sort(scores)[-k:]
    return float(np.mean(highest))


def noisy_or(scores: np.ndarray) -> float:
    """``1 - prod(1 - p)``: probability that at least one independent slice is manipulated.

    Raises:
        ValueError: when a score is outside [0, 1].
    """
    if scores.min() < 0.0 or scores.max() > 1.0:
        raise ValueError(
            f"noisy_or needs probabilities in [0, 1]; scores range from {scores.min():.4g} to "
            f"{scores.max():.4g}. Calibrate the scores or choose 'max' or 'topk_mean'."
        )
    # log1p keeps precision when many slices have small probabilities.
    return float(-np.expm1(np.sum(np.log1p(-scores))))


_AGGREGATORS: dict[str, Callable[..., float]] = {
    "max": max_score,
    "mean": mean_score,
    "topk_mean": top_k_mean,
    "noisy_or": noisy_or,
}


def list_aggregators() -> tuple[str, ...]:
    """Names accepted by ``get_aggregator``."""
    return tuple(_AGGREGATORS)


def get_aggregator(name: str, *, k: int = 3) -> Aggregator:
    """Look an aggregator up by name.

    Args:
        name: one of ``list_aggregators()``.
        k: slices averaged by ``topk_mean``; ignored by the others.

    Raises:
        KeyError: when the name is unknown; the message lists the known ones.
    """
    try:
        function = _AGGREGATORS[name]
    except KeyError:
        known = ", ".join(sorted(_AGGREGATORS))
        raise KeyError(f"unknown aggregator {name!r}; choose one of: {known}") from None
    if name == "topk_mean":
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        return partial(function, k=k)
    return function


@dataclass(frozen=True)
class AggregatedScores:
    """One score (and label) per group, in order of the group's first appearance.

    Attributes:
        keys: group keys (series or study UIDs).
        scores: aggregated score per group.
        labels: 1 when any member is manipulated, else 0; None when no labels were given.
        counts: members per group.
        method: the aggregator name used.
    """

    keys: tuple[Hashable, ...]
    scores: np.ndarray
    labels: np.ndarray | None
    counts: np.ndarray
    method: str


def aggregate_scores(
    keys: Sequence[Hashable],
    scores: ArrayLike,
    labels: ArrayLike | None = None,
    *,
    method: str = "max",
    k: int = 3,
) -> AggregatedScores:
    """Group member scores by key and reduce each group to one score.

    Args:
        keys: one group key per member (e.g. the SeriesInstanceUID of each slice).
        scores: one score per member.
        labels: optional 0/1 label per member; a group is labelled 1 when any member is.
        method: aggregator name, see ``list_aggregators()``.
        k: slices averaged by ``topk_mean``.

    Raises:
        ValueError: when ``keys``, ``scores`` and ``labels`` differ in length.
        KeyError: when ``method`` is unknown.
    """
    aggregator = get_aggregator(method, k=k)
    score_array = np.asarray(scores, dtype=np.float64)
    label_array: np.ndarray | None = None
    if labels is not None:
        label_array, score_array = as_labels_and_scores(labels, score_array)
    else:
        _, score_array = as_labels_and_scores(np.zeros(score_array.shape, np.int8), score_array)
    if len(keys) != score_array.size:
        raise ValueError(
            f"need one key per score; got {len(keys)} keys and {score_array.size} scores"
        )
    members: dict[Hashable, list[int]] = {}
    for position, key in enumerate(keys):
        members.setdefault(key, []).append(position)
    group_keys = tuple(members)
    group_scores = np.array(
        [aggregator(score_array[members[key]]) for key in group_keys], dtype=np.float64
    )
    group_labels = None
    if label_array is not None:
        group_labels = np.array(
            [int(label_array[members[key]].max()) for key in group_keys], dtype=np.int8
        )
    counts = np.array([len(members[key]) for key in group_keys], dtype=np.int64)
    return AggregatedScores(
        keys=group_keys, scores=group_scores, labels=group_labels, counts=counts, method=method
    )
