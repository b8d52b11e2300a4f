"""Input checks shared by the metric functions: clean 1-D arrays, or an error saying why not."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def as_labels_and_scores(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(labels, scores)`` as 1-D ``int8`` / ``float64`` arrays of equal length.

    Args:
        labels: 0 (authentic) or 1 (manipulated) per case; booleans are accepted.
        scores: higher means more likely manipulated; any finite real numbers.

    Raises:
        ValueError: when the shapes differ, a label is not 0/1, or a score is NaN or infinite.
    """
    label_array = np.asarray(labels)
    score_array = np.asarray(scores, dtype=np.float64)
    if label_array.ndim != 1 or score_array.ndim != 1:
        raise ValueError(
            f"labels and scores must be 1-D (one value per case); got shapes "
            f"{label_array.shape} and {score_array.shape}. Flatten them first."
        )
    if label_array.shape != score_array.shape:
        raise ValueError(
            f"labels and scores must have the same length; got {label_array.size} labels and "
            f"{score_array.size} scores."
        )
    if label_array.size and not np.isin(label_array, (0, 1)).all():
        bad = np.unique(label_array[~np.isin(label_array, (0, 1))])[:5]
        raise ValueError(
            f"labels must be 0 (authentic) or 1 (manipulated); found {bad.tolist()}. "
            "Map other label codes to 0/1 before computing metrics."
        )
    if not np.isfinite(score_array).all():
        count = int((~np.isfinite(score_array)).sum())
        raise ValueError(
            f"{count} score(s) are NaN or infinite; drop or impute those cases before computing "
            "metrics (a detector that could not assess a case should be reported separately)."
        )
    return label_array.astype(np.int8), score_array


def single_class_reason(labels: np.ndarray) -> str | None:
    """Say why ranking metrics are undefined for ``labels``, or None when both classes occur."""
    n_positive = int(labels.sum())
    if labels.size == 0:
        return "no cases were given"
    if n_positive == 0:
        return f"all {labels.size} cases are authentic (label 0); there is nothing to detect"
    if n_positive == labels.size:
        return f"all {labels.size} cases are manipulated (label 1); there is no authentic baseline"
    return None
