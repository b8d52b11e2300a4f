"""Calibration: expected calibration error (ECE) and the data behind a reliability diagram.

Scores are read as probabilities of manipulation, so they must lie in [0, 1]. Bins are equal
width; a score on an inner edge belongs to the lower bin, i.e. bin ``i`` holds scores in
``(edges[i], edges[i + 1]]`` and the first bin also holds 0. This is the convention of Guo et al.
(2017) and of ``sklearn.calibration.calibration_curve(strategy="uniform")``, so the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from medforensics.evaluate._inputs import as_labels_and_scores


@dataclass(frozen=True)
class ReliabilityDiagram:
    """Per-bin calibration data; empty bins hold NaN in the mean columns.

    Attributes:
        bin_edges: ``n_bins + 1`` edges from 0 to 1.
        counts: cases per bin.
        mean_score: mean predicted probability in each bin (x of the diagram).
        fraction_manipulated: fraction of label-1 cases in each bin (y of the diagram).
        ece: expected calibration error, the count-weighted mean of
            ``|fraction_manipulated - mean_score|`` over non-empty bins; NaN with no cases.
    """

    bin_edges: np.ndarray
    counts: np.ndarray
    mean_score: np.ndarray
    fraction_manipulated: np.ndarray
    ece: float

    @property
    def n_bins(self) -> int:
        """Number of bins."""
        return int(self.counts.size)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form: lists of floats, NaN written as None."""
        return {
            "bin_edges": self.bin_edges.tolist(),
            "counts": self.counts.tolist(),
            "mean_score": _nan_to_none(self.mean_score),
            "fraction_manipulated": _nan_to_none(self.fraction_manipulated),
            "ece": None if np.isnan(self.ece) else self.ece,
        }


def reliability_diagram(
    labels: ArrayLike, scores: ArrayLike, n_bins: int = 10
) -> ReliabilityDiagram:
    """Bin calibrated scores and compare each bin's mean score with its fraction manipulated.

    Args:
        labels: 0 (authentic) or 1 (manipulated) per case.
        scores: calibrated probability of manipulation per case, in [0, 1].
        n_bins: number of equal-width bins over [0, 1].

    Raises:
        ValueError: when ``n_bins < 1`` or a score lies outside [0, 1].
    """
    label_array, score_array = as_labels_and_scores(labels, scores)
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    if score_array.size and (score_array.min() < 0.0 or score_array.max() > 1.0):
        raise ValueError(
            f"calibration needs probabilities in [0, 1]; scores range from "
            f"{score_array.min():.4g} to {score_array.max():.4g}. Calibrate the detector (or "
            "skip ECE for uncalibrated scores)."
        )
    bin_edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_ids = np.searchsorted(bin_edges[1:-1], score_array, side="left")
    counts = np.bincount(bin_ids, minlength=n_bins)
    score_sums = np.bincount(bin_ids, weights=score_array, minlength=n_bins)
    label_sums = np.bincount(bin_ids, weights=label_array.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.where(counts > 0, score_sums / counts, np.nan)
        fraction = np.where(counts > 0, label_sums / counts, np.nan)
    if score_array.size == 0:
        ece = float("nan")
    else:
        filled = counts > 0
        gaps = np.abs(fraction[filled] - mean_score[filled])
        ece = float(np.sum(counts[filled] * gaps) / score_array.size)
    return ReliabilityDiagram(
        bin_edges=bin_edges,
        counts=counts,
        mean_score=mean_score,
        fraction_manipulated=fraction,
        ece=ece,
    )


def expected_calibration_error(labels: ArrayLike, scores: ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins (see ``reliability_diagram``).

    Args:
        labels: 0 (authentic) or 1 (manipulated) per case.
        scores: calibrated probability of manipulation per case, in [0, 1].
        n_bins: number of equal-width bins over [0, 1].
    """
    return reliability_diagram(labels, scores, n_bins).ece


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(value) else float(value) for value in values]
