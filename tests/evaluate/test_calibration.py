"""ECE and reliability data by hand, and against scikit-learn's calibration_curve."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from medforensics.evaluate.calibration import expected_calibration_error, reliability_diagram


def test_ece_two_bins_by_hand() -> None:
    labels = [0, 1, 1, 1]
    scores = [0.2, 0.4, 0.6, 0.8]
    # Bin (0, 0.5]: scores 0.2, 0.4 -> mean 0.3; labels 0, 1 -> fraction 0.5; gap 0.2.
    # Bin (0.5, 1]: scores 0.6, 0.8 -> mean 0.7; labels 1, 1 -> fraction 1.0; gap 0.3.
    # ECE = 2/4 * 0.2 + 2/4 * 0.3 = 0.25
    diagram = reliability_diagram(labels, scores, n_bins=2)
    assert diagram.ece == pytest.approx(0.25)
    np.testing.assert_array_equal(diagram.counts, [2, 2])
    np.testing.assert_allclose(diagram.mean_score, [0.3, 0.7])
    np.testing.assert_allclose(diagram.fraction_manipulated, [0.5, 1.0])
    np.testing.assert_allclose(diagram.bin_edges, [0.0, 0.5, 1.0])
    assert expected_calibration_error(labels, scores, n_bins=2) == pytest.approx(0.25)


def test_edge_scores_go_to_the_lower_bin() -> None:
    # 0.5 sits on the inner edge and belongs to (0, 0.5]; 1.0 to (0.5, 1].
    # Bin 1: mean 0.5, fraction 1 -> gap 0.5. Bin 2: mean 1.0, fraction 1 -> gap 0.
    # ECE = 1/2 * 0.5 + 1/2 * 0 = 0.25
    diagram = reliability_diagram([1, 1], [0.5, 1.0], n_bins=2)
    np.testing.assert_array_equal(diagram.counts, [1, 1])
    assert diagram.ece == pytest.approx(0.25)


def test_perfectly_calibrated_bins_give_zero() -> None:
    # Bin (0, 0.5]: four cases at 0.25, one manipulated -> fraction 0.25 = mean.
    # Bin (0.5, 1]: four cases at 0.75, three manipulated -> fraction 0.75 = mean.
    labels = [1, 0, 0, 0, 1, 1, 1, 0]
    scores = [0.25] * 4 + [0.75] * 4
    assert expected_calibration_error(labels, scores, n_bins=2) == pytest.approx(0.0)


def test_empty_bins_are_nan_and_ignored() -> None:
    diagram = reliability_diagram([0, 1], [0.05, 0.95], n_bins=10)
    assert diagram.counts.sum() == 2
    assert math.isnan(diagram.mean_score[5])
    # gaps: |0 - 0.05| and |1 - 0.95| -> ECE = (0.05 + 0.05) / 2 = 0.05
    assert diagram.ece == pytest.approx(0.05)
    assert diagram.to_dict()["mean_score"][5] is None  # type: ignore[index]


def test_matches_sklearn_calibration_curve() -> None:
    rng = np.random.default_rng(3)
    scores = rng.uniform(0, 1, 500)
    scores[:20] = np.linspace(0, 1, 20).round(1)  # some scores exactly on bin edges
    labels = (rng.uniform(0, 1, 500) < scores**2).astype(int)
    diagram = reliability_diagram(labels, scores, n_bins=10)
    prob_true, prob_pred = calibration_curve(labels, scores, n_bins=10, strategy="uniform")
    filled = diagram.counts > 0
    np.testing.assert_allclose(diagram.fraction_manipulated[filled], prob_true)
    np.testing.assert_allclose(diagram.mean_score[filled], prob_pred)
    weights = diagram.counts[filled] / labels.size
    assert diagram.ece == pytest.approx(np.sum(weights * np.abs(prob_true - prob_pred)))


def test_scores_outside_unit_interval_are_refused() -> None:
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        reliability_diagram([0, 1], [0.2, 1.5])
    with pytest.raises(ValueError, match="n_bins"):
        reliability_diagram([0, 1], [0.2, 0.5], n_bins=0)
