"""Slice → series/study aggregation by hand."""

from __future__ import annotations

import numpy as np
import pytest

from medforensics.evaluate.aggregate import aggregate_scores, get_aggregator, list_aggregators

KEYS = ["a", "a", "a", "b", "b"]
SCORES = [0.1, 0.5, 0.9, 0.2, 0.4]
LABELS = [0, 1, 0, 0, 0]


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("max", [0.9, 0.4]),
        ("mean", [0.5, 0.3]),  # (0.1 + 0.5 + 0.9) / 3, (0.2 + 0.4) / 2
        ("topk_mean", [0.7, 0.3]),  # k = 2: (0.9 + 0.5) / 2, (0.4 + 0.2) / 2
        # 1 - (1 - 0.1)(1 - 0.5)(1 - 0.9) = 1 - 0.045 = 0.955; 1 - 0.8 * 0.6 = 0.52
        ("noisy_or", [0.955, 0.52]),
    ],
)
def test_aggregators_by_hand(method: str, expected: list[float]) -> None:
    result = aggregate_scores(KEYS, SCORES, LABELS, method=method, k=2)
    assert result.keys == ("a", "b")
    np.testing.assert_allclose(result.scores, expected)
    # A series is manipulated when any slice is.
    np.testing.assert_array_equal(result.labels, [1, 0])
    np.testing.assert_array_equal(result.counts, [3, 2])
    assert result.method == method


def test_keys_keep_first_appearance_order_and_labels_are_optional() -> None:
    result = aggregate_scores(["s2", "s1", "s2"], [0.3, 0.6, 0.8])
    assert result.keys == ("s2", "s1")
    np.testing.assert_allclose(result.scores, [0.8, 0.6])
    assert result.labels is None


def test_top_k_larger_than_group_uses_all() -> None:
    aggregator = get_aggregator("topk_mean", k=10)
    assert aggregator(np.array([0.2, 0.4])) == pytest.approx(0.3)


def test_registry_names_and_errors() -> None:
    assert set(list_aggregators()) == {"max", "mean", "topk_mean", "noisy_or"}
    with pytest.raises(KeyError, match="choose one of"):
        get_aggregator("median")
    with pytest.raises(ValueError, match="k must be"):
        get_aggregator("topk_mean", k=0)
    with pytest.raises(ValueError, match="probabilities"):
        aggregate_scores(["a"], [1.5], method="noisy_or")
    with pytest.raises(ValueError, match="one key per score"):
        aggregate_scores(["a"], [0.1, 0.2])
