"""Training and calibration of the ``patch-cascade`` baseline (``detect/patch_cascade.py``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from medforensics.detect.calibration import fit_platt
from medforensics.detect.classical import (
    MIN_OVERLAP,
    ClassicalModel,
    _case_counts,
    _context_weights,
    _fit_layers,
    tile_training_set,
)
from medforensics.detect.features import (
    TileGrid,
    feature_names,
    tile_overlap,
)
from medforensics.detect.patch_cascade import (
    MIN_SLICE_TILES,
    MIN_TILES,
    HeatmapClassifier,
    PatchCascadeDetector,
    PatchCascadeModel,
    heatmap_features,
)
from medforensics.detect.types import OperatingPoint

if TYPE_CHECKING:
    from medforensics.train.cases import TrainCase


def _split_groups(
    cases: Sequence[TrainCase], every: int
) -> tuple[list[TrainCase], list[TrainCase]]:
    """Every ``every``-th authentic chunk with its twins to validation (make_cases order)."""
    train: list[TrainCase] = []
    val: list[TrainCase] = []
    group = -1
    for case in cases:
        group += case.attack is None
        (val if group % every == every - 1 else train).append(case)
    return train, val


def _slice_examples(
    logits: np.ndarray, case: TrainCase, grid: TileGrid
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmap feature rows of a case's slices and their labels.

    A tampered slice is positive when the attack covers at least ``MIN_OVERLAP`` of one of its
    patches; slices it only grazes are left out (neither clearly tampered nor untouched).
    """
    rows, described = heatmap_features(logits)
    labels = np.zeros(len(rows), dtype=np.int8)
    keep = described.copy()
    if case.mask is not None:
        covered = tile_overlap(case.mask, grid).max(axis=(1, 2))
        labels[covered >= MIN_OVERLAP] = 1
        keep &= (covered >= MIN_OVERLAP) | ~case.mask.any(axis=(1, 2))
    return rows[keep], labels[keep]


def _fit_heatmap(
    rows: np.ndarray, labels: np.ndarray, components: int, kernel: str, c: float, seed: int
) -> HeatmapClassifier:
    from sklearn.decomposition import PCA
    from sklearn.svm import SVC

    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale < 1e-9] = 1.0
    standard = (rows - mean) / scale
    k = max(1, min(components, standard.shape[1], standard.shape[0] - 1))
    pca = PCA(n_components=k, random_state=seed).fit(standard)
    projected = pca.transform(standard)
    # scikit-learn's gamma="scale", computed here so the model file holds the number itself
    gamma = 1.0 / (k * max(float(projected.var()), 1e-12))
    svm = SVC(kernel=kernel, C=c, gamma=gamma, class_weight="balanced", random_state=seed)
    svm.fit(projected, labels)
    sign = 1.0 if int(svm.classes_[1]) == 1 else -1.0
    model = HeatmapClassifier(
        mean=mean,
        scale=scale,
        pca_mean=pca.mean_.astype(np.float64),
        components=pca.components_.astype(np.float64),
        kernel=kernel,
        intercept=sign * float(svm.intercept_[0]),
    )
    if kernel == "linear":
        model.coef = sign * np.asarray(svm.coef_[0], dtype=np.float64)
    else:
        model.support_vectors = np.asarray(svm.support_vectors_, dtype=np.float64)
        model.dual_coef = sign * np.asarray(svm.dual_coef_[0], dtype=np.float64)
        model.gamma = gamma
    # the exported numbers must reproduce scikit-learn's own decision values
    expected = sign * svm.decision_function(projected)
    if not np.allclose(model.decision(rows), expected, atol=1e-6):
        raise RuntimeError("exported SVM disagrees with scikit-learn; please report this")
    return model


def train_patch_cascade(
    cases: Sequence[TrainCase],
    seed: int,
    *,
    val_cases: Sequence[TrainCase] | None = None,
    val_every: int = 3,
    grid: TileGrid | None = None,
    hidden: int = 0,
    regularisation: float = 0.1,
    max_negatives: int = 100_000,
    flat_share: float = 0.3,
    components: int = 6,
    kernel: str = "linear",
    svm_c: float = 1.0,
    target_fpr: float = 0.01,
    inconclusive_fpr: float = 0.03,
    card: dict[str, Any] | None = None,
) -> PatchCascadeModel:
    """Train both stages on ``cases`` and calibrate on ``val_cases``.

    Stage 1 learns patches: those an attack covers by at least ``MIN_OVERLAP`` are positives,
    every patch of an authentic chunk a negative (at most ``max_negatives``, weighted to the
    positives' tissue mix), classes weighted 50/50. Stage 2 learns slices from the stage-1
    heatmaps of the same cases (stage 1 is a linear model or a tiny perceptron, so its
    in-sample maps are close to what new cases get); then Platt scaling and the operating point
    come from the validation cases only.

    Args:
        cases: authentic chunks and tampered twins (``medforensics.train.cases.make_cases``).
        seed: makes the negative draw, the 2D share, the perceptron and the SVM reproducible.
        val_cases: cases to calibrate on; by default every ``val_every``-th authentic chunk of
            ``cases`` with its twins is held out for this.
        val_every: see ``val_cases``.
        grid: patch tiling (default 32-pixel patches every 16 pixels).
        hidden: hidden units of the stage-1 perceptron; 0 trains a logistic regression.
        regularisation: inverse regularisation strength ``C`` of stage 1.
        max_negatives: cap on authentic patches used for fitting stage 1.
        flat_share: share of training cases whose features are computed slice by slice
            (no adjacent-slice context), so single 2D slices are scored on familiar ground.
        components: PCA components kept in stage 2.
        kernel: SVM kernel, ``linear`` or ``rbf``.
        svm_c: SVM regularisation ``C``.
        target_fpr: false-positive rate of the "manipulated" threshold on validation.
        inconclusive_fpr: false-positive rate of the "authentic" threshold.
        card: model card entries; training counts and validation figures are added.

    Raises:
        ValueError: when the training or validation cases lack authentic or tampered chunks,
            no patch is covered enough by an attack, or the kernel is unknown.
    """
    if kernel not in ("rbf", "linear"):
        raise ValueError(f"kernel must be 'rbf' or 'linear', got {kernel!r}")
    if val_cases is None:
        train_cases, val_list = _split_groups(cases, max(val_every, 2))
    else:
        train_cases, val_list = list(cases), list(val_cases)
    for label, chosen in (("train", train_cases), ("validation", val_list)):
        kinds = {case.label for case in chosen}
        if kinds != {0, 1}:
            raise ValueError(
                f"patch-cascade {label} cases need both authentic and tampered chunks; got "
                f"{len(chosen)} case(s) with labels {sorted(kinds)}"
            )
    grid = grid or TileGrid()
    rng = np.random.default_rng(seed)
    # stage 1: patches
    items, x, y, mean, scale = tile_training_set(
        train_cases, grid, rng, flat_share, max_negatives, unit="patch"
    )
    weight = _context_weights(x[:, feature_names().index("mean_intensity")], y)
    patches = ClassicalModel(
        feature_names=feature_names(),
        grid=grid,
        mean=mean,
        scale=scale,
        layers=_fit_layers((x - mean) / scale, y, weight, hidden, seed, regularisation),
    )
    # stage 2: heatmaps of the training cases, per slice
    slice_rows, slice_labels = [], []
    for item in items:
        rows, labels = _slice_examples(patches.tile_logits(item.features), item.case, grid)
        slice_rows.append(rows)
        slice_labels.append(labels)
    s_rows, s_labels = np.concatenate(slice_rows), np.concatenate(slice_labels)
    if set(s_labels.tolist()) != {0, 1}:
        raise ValueError(
            "the training heatmaps need both untouched and tampered slices with at least "
            f"{MIN_SLICE_TILES} body patches each; got labels {sorted(set(s_labels.tolist()))}"
        )
    heatmap = _fit_heatmap(s_rows, s_labels, components, kernel, svm_c, seed)
    model = PatchCascadeModel(patches=patches, heatmap=heatmap)
    model.card = {
        **(card or {}),
        "stage1": "logistic regression" if hidden <= 0 else f"MLP({hidden})",
        "stage2": f"PCA({heatmap.components.shape[0]}) + {kernel} SVM (C={svm_c})",
        "training_patches": {"positive": int(y.sum()), "negative": int((1 - y).sum())},
        "training_slices": {"positive": int(s_labels.sum()), "negative": int((1 - s_labels).sum())},
        "training_cases": _case_counts(train_cases),
        "seed": seed,
    }
    return calibrate_patch_cascade(model, val_list, target_fpr, inconclusive_fpr)


def calibrate_patch_cascade(
    model: PatchCascadeModel,
    val_cases: Sequence[TrainCase],
    target_fpr: float = 0.01,
    inconclusive_fpr: float = 0.03,
) -> PatchCascadeModel:
    """Fit Platt scaling and the operating point on ``val_cases``; add figures to the card."""
    from medforensics.evaluate import compute_metrics, threshold_for_fpr

    detector = PatchCascadeDetector(model)
    statistics = np.array([detector.statistic(case.volume) for case in val_cases])
    labels = np.array([case.label for case in val_cases])
    keep = np.isfinite(statistics)
    statistics, labels = statistics[keep], labels[keep]
    if set(labels.tolist()) != {0, 1}:
        raise ValueError(
            "no assessable authentic or tampered validation case (each needs at least "
            f"{MIN_TILES} body patches); give larger validation images"
        )
    model.calibration = fit_platt(statistics, labels)
    probabilities = model.calibration(statistics)
    authentic = probabilities[labels == 0]
    manipulated_at = min(threshold_for_fpr(authentic, target_fpr), 1.0)
    model.operating_point = OperatingPoint(
        manipulated_at=float(manipulated_at),
        authentic_below=float(min(threshold_for_fpr(authentic, inconclusive_fpr), manipulated_at)),
        target_fpr=target_fpr,
    )
    overall = compute_metrics(labels, probabilities, threshold=manipulated_at)
    model.card["validation"] = {
        "authentic_cases": int((labels == 0).sum()),
        "manipulated_cases": int(labels.sum()),
        "auc": _round(overall.roc_auc),
        "tpr_at_threshold": _round(overall.at_threshold.recall),
    }
    return model


def _round(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 4)
