"""PNG figures of an evaluation: ROC, precision-recall, reliability, bars, heatmap overlays.

matplotlib (the ``ml`` extra) draws them with the Agg renderer on ``Figure`` objects, never
through ``pyplot``'s global state, so plotting is safe in servers and tests. Each function
writes one PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medforensics.evaluate.metrics import roc_curve
from medforensics.utils.optional import require

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from medforensics.evaluate.run import Example

#: CT display window for the overlays (lung to soft tissue)
CT_WINDOW = (-1000.0, 400.0)
_LEVEL_STYLE = {"slice": ":", "case": "-", "study": "--"}
DPI = 100


def _figure(width: float = 5.0, height: float = 4.0) -> Figure:
    require("matplotlib", "evaluation plots")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _finish(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.grid(alpha=0.3)


def roc_plot(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], aucs: Mapping[str, Any], path: Path
) -> Path:
    """ROC curves of each level (slice, case, study) with their AUC in the legend."""
    fig = _figure()
    ax = fig.subplots()
    for level, (labels, scores) in curves.items():
        if len(set(labels.tolist())) < 2:
            continue
        roc = roc_curve(labels, scores)
        auc = aucs.get(level)
        name = f"{level} (AUC {auc:.3f})" if isinstance(auc, float) else level
        ax.plot(roc.fpr, roc.tpr, _LEVEL_STYLE.get(level, "-"), label=name, drawstyle="steps-post")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, label="chance")
    ax.legend(loc="lower right", fontsize="small")
    _finish(ax, "ROC", "false-positive rate", "true-positive rate")
    return _save(fig, path)


def precision_recall(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at each distinct score threshold, highest threshold first."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order].astype(np.int64)
    last = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    tp = np.cumsum(sorted_labels)[last]
    precision = tp / (last + 1)
    recall = tp / max(int(labels.sum()), 1)
    return np.r_[0.0, recall], np.r_[1.0, precision]


def pr_plot(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], aps: Mapping[str, Any], path: Path
) -> Path:
    """Precision-recall curves of each level, with the prevalence of each as a baseline."""
    fig = _figure()
    ax = fig.subplots()
    for level, (labels, scores) in curves.items():
        if len(set(labels.tolist())) < 2:
            continue
        recall, precision = precision_recall(labels, scores)
        ap = aps.get(level)
        name = f"{level} (AP {ap:.3f})" if isinstance(ap, float) else level
        (line,) = ax.plot(
            recall, precision, _LEVEL_STYLE.get(level, "-"), label=name, drawstyle="steps-post"
        )
        ax.axhline(float(labels.mean()), color=line.get_color(), lw=0.6, alpha=0.5)
    ax.legend(loc="lower left", fontsize="small")
    _finish(ax, "Precision-recall (thin lines: prevalence)", "recall", "precision")
    return _save(fig, path)


def reliability_plot(reliability: Mapping[str, Mapping[str, Any] | None], path: Path) -> Path:
    """Fraction manipulated against mean predicted probability, per bin and level."""
    fig = _figure()
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, label="perfect calibration")
    for level, diagram in reliability.items():
        if not diagram:
            continue
        pairs = [
            (x, y)
            for x, y in zip(diagram["mean_score"], diagram["fraction_manipulated"], strict=True)
            if x is not None and y is not None
        ]
        if not pairs:
            continue
        xs, ys = zip(*pairs, strict=True)
        ece = diagram.get("ece")
        name = f"{level} (ECE {ece:.3f})" if isinstance(ece, float) else level
        ax.plot(xs, ys, _LEVEL_STYLE.get(level, "-"), marker="o", ms=3, label=name)
    ax.legend(loc="upper left", fontsize="small")
    _finish(ax, "Reliability", "mean predicted probability", "fraction manipulated")
    return _save(fig, path)


def bar_plot(
    names: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    path: Path,
    title: str,
    ylabel: str = "ROC-AUC",
    intervals: Mapping[str, Sequence[tuple[float, float] | None]] | None = None,
    chance: float | None = 0.5,
) -> Path:
    """Grouped bars (one group per name, one bar per series), optional interval whiskers."""
    fig = _figure(max(5.0, 0.9 * len(names) * max(1, len(series)) + 2.0), 4.0)
    ax = fig.subplots()
    width = 0.8 / max(1, len(series))
    x = np.arange(len(names))
    for index, (label, values) in enumerate(series.items()):
        heights = np.array([np.nan if v is None else v for v in values], dtype=float)
        offsets = x - 0.4 + width * (index + 0.5)
        ax.bar(offsets, np.nan_to_num(heights), width, label=label)
        for offset, height in zip(offsets, heights, strict=True):
            text = "n/a" if np.isnan(height) else f"{height:.2f}"
            ax.text(
                offset,
                0.01 if np.isnan(height) else height + 0.01,
                text,
                ha="center",
                va="bottom",
                fontsize="x-small",
            )
        spans = (intervals or {}).get(label)
        if spans:
            for offset, height, span in zip(offsets, heights, spans, strict=True):
                if span is not None and not np.isnan(height):
                    low, high = span
                    ax.errorbar(
                        offset,
                        height,
                        yerr=[[height - low], [high - height]],
                        color="black",
                        capsize=3,
                        lw=0.8,
                    )
    if chance is not None:
        ax.axhline(chance, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, list(names), rotation=20 if len(names) > 4 else 0, ha="right")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def upsample(cells: np.ndarray, stride: int, shape: tuple[int, int]) -> np.ndarray:
    """A cell map repeated ``stride`` times along rows and cols, padded/cropped to ``shape``."""
    full = np.repeat(np.repeat(cells, max(1, stride), axis=0), max(1, stride), axis=1)
    out = np.zeros(shape, dtype=np.float32)
    rows, cols = min(shape[0], full.shape[0]), min(shape[1], full.shape[1])
    out[:rows, :cols] = full[:rows, :cols]
    return out


def heatmap_plot(example: Example, path: Path) -> Path:
    """The slice in grey, the anomaly map in colour, the attack's footprint outlined."""
    fig = _figure(4.2, 4.4)
    ax = fig.subplots()
    image = example.image
    if example.modality == "CT":
        low, high = CT_WINDOW
    else:
        low, high = (float(v) for v in np.percentile(image, [1, 99]))
    ax.imshow(image, cmap="gray", vmin=low, vmax=max(high, low + 1e-3))
    heat = upsample(example.anomaly, example.stride, image.shape[:2])
    shown = np.ma.masked_less(heat, 0.05)
    overlay = ax.imshow(shown, cmap="inferno", alpha=0.5, vmin=0.0, vmax=1.0)
    fig.colorbar(overlay, ax=ax, fraction=0.046, pad=0.02, label="anomaly")
    if example.mask is not None and example.mask.any():
        ax.contour(example.mask.astype(float), levels=[0.5], colors="cyan", linewidths=0.9)
    for row, col in example.peaks:
        ax.plot(col, row, marker="+", color="lime", ms=10, mew=1.5)
    ax.set_title(example.title, fontsize="small")
    ax.set_axis_off()
    return _save(fig, path)
