"""From authentic scans to a calibrated ``ct-local`` checkpoint: split, train, calibrate, write.

1. Patients are split into training and validation (by patient whenever there are at least
   three; with fewer, each series' last quarter is held out instead, and the card says so).
2. The network trains on simulator twins of the training part (``train.local``).
3. On the validation part, fresh twins (other seeds) give the volume statistic of authentic and
   tampered chunks: Platt scaling is fitted on them and the verdict threshold is set where the
   authentic chunks' false-positive rate is at most the target (1 % by default).
4. The checkpoint carries the weights, the preprocessing, the calibration, the operating point,
   the validation metrics and a model card.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medforensics.__about__ import __version__
from medforensics.detect.calibration import fit_platt
from medforensics.detect.checkpoint import save_checkpoint
from medforensics.detect.local_net import CONTEXT, STRIDE, TRUNCATE, ResidualFCN, ResidualFilter
from medforensics.evaluate import compute_metrics, split_by_patient, threshold_for_fpr
from medforensics.io.types import ImageVolume
from medforensics.tamper.base import DEFAULT_ATTACKS
from medforensics.train.cases import TrainCase, make_cases, patient_key, scanner_key, slab
from medforensics.train.local import LocalTrainConfig, train_local

#: the attack families the default model is trained on
CHUNK = 5


@dataclass
class Scored:
    """A case reduced to what evaluation needs."""

    statistic: float
    label: int
    attack: str | None
    patient: str
    scanner: str
    launder: tuple[str, ...] = ()
    hit: bool | None = None  # top-3 findings within 20 px and 2 slices of the centre


@dataclass
class TrainResult:
    path: Path
    meta: dict[str, Any]
    validation: list[Scored] = field(default_factory=list)


def pairs(cases: Sequence[TrainCase]) -> list[tuple[TrainCase, TrainCase]]:
    """(authentic, tampered) pairs from ``make_cases`` output (authentic chunk, then its twins)."""
    out = []
    current: TrainCase | None = None
    for case in cases:
        if case.attack is None:
            current = case
        elif current is not None:
            out.append((current, case))
    return out


def split_volumes(
    volumes: Sequence[ImageVolume], seed: int, val_fraction: float = 0.25
) -> tuple[list[ImageVolume], list[ImageVolume], str]:
    """Training and validation volumes, by patient when there are enough patients."""
    keys = [patient_key(v) for v in volumes]
    if len(set(keys)) >= 3:
        split = split_by_patient(keys, fractions=(1 - val_fraction, val_fraction, 0.0), seed=seed)
        val = set(split.val)
        return (
            [v for v, k in zip(volumes, keys, strict=True) if k not in val],
            [v for v, k in zip(volumes, keys, strict=True) if k in val],
            f"by patient: {len(set(keys)) - len(val)} training, {len(val)} validation patients",
        )
    train, hold = [], []
    for volume in volumes:
        n = volume.shape[0]
        if n < 4 * CHUNK:
            train.append(volume)
            continue
        cut = int(n * (1 - val_fraction))
        train.append(slab(volume, 0, cut - 2))  # a 2-slice gap keeps context apart
        hold.append(slab(volume, cut, n))
    return (
        train,
        hold,
        "by slab: fewer than 3 patients, so the last quarter of each series was held out "
        "(validation figures are optimistic: same patients as training)",
    )


def score_cases(
    analyse: Callable[[ImageVolume], tuple[float, list[tuple[int, int, int]]]],
    cases: Sequence[TrainCase],
) -> list[Scored]:
    """Statistic and localisation hit (top-3 peaks) of every case; ``analyse`` gives both."""
    out = []
    for case in cases:
        value, peaks = analyse(case.volume)
        if math.isnan(value):
            continue
        hit = None
        if case.centre is not None and case.mask is not None:
            hit = localisation_hit(peaks[:3], case.mask)
        out.append(
            Scored(value, case.label, case.attack, case.patient, case.scanner, case.launder, hit)
        )
    return out


def localisation_hit(
    peaks: Sequence[tuple[int, int, int]], mask: np.ndarray, px: float = 20.0, slices: int = 2
) -> bool:
    """True when a peak lies within ``px`` pixels (in-plane) and ``slices`` slices of the mask."""
    coords = np.argwhere(mask)
    if coords.size == 0:
        return False
    for z, r, c in peaks:
        near = coords[np.abs(coords[:, 0] - z) <= slices]
        if near.size and float(np.min(np.hypot(near[:, 1] - r, near[:, 2] - c))) <= px:
            return True
    return False


def calibrate(scored: Sequence[Scored], target_fpr: float) -> dict[str, Any]:
    """Platt scaling and operating point from validation cases; metrics at that point."""
    stats = np.array([s.statistic for s in scored])
    labels = np.array([s.label for s in scored])
    platt = fit_platt(stats, labels)
    probs = platt(stats)
    authentic = probs[labels == 0]
    manipulated_at = float(min(threshold_for_fpr(authentic, target_fpr), 1.0))
    authentic_below = float(
        min(threshold_for_fpr(authentic, min(3 * target_fpr, 0.5)), manipulated_at)
    )
    metrics = compute_metrics(labels, probs, threshold=manipulated_at)
    return {
        "calibration": {"a": platt.a, "b": platt.b, "method": "platt"},
        "operating_point": {
            "manipulated_at": manipulated_at,
            "authentic_below": authentic_below,
            "target_fpr": target_fpr,
        },
        "validation": summarise(scored, probs, manipulated_at),
        "_metrics": metrics,
    }


def summarise(scored: Sequence[Scored], probs: np.ndarray, threshold: float) -> dict[str, Any]:
    """AUC, FPR/TPR at the threshold, per attack and localisation, as plain JSON."""
    labels = np.array([s.label for s in scored])
    overall = compute_metrics(labels, probs, threshold=threshold)
    per_attack = {}
    for attack in sorted({s.attack for s in scored if s.attack}):
        keep = np.array([s.attack in (None, attack) for s in scored])
        m = compute_metrics(labels[keep], probs[keep], threshold=threshold)
        per_attack[attack] = {
            "auc": _round(m.roc_auc),
            "tpr_at_threshold": _round(float(np.mean(probs[keep & (labels == 1)] >= threshold))),
            "cases": int((labels[keep] == 1).sum()),
        }
    hits = [s.hit for s in scored if s.hit is not None]
    return {
        "authentic_cases": int((labels == 0).sum()),
        "manipulated_cases": int((labels == 1).sum()),
        "auc": _round(overall.roc_auc),
        "fpr_at_threshold": _round(float(np.mean(probs[labels == 0] >= threshold))),
        "tpr_at_threshold": _round(float(np.mean(probs[labels == 1] >= threshold))),
        "top3_hit_rate": _round(float(np.mean(hits))) if hits else None,
        "per_attack": per_attack,
    }


def _round(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), 4)


def train_ct_local(
    volumes: Sequence[ImageVolume],
    out: str | Path,
    config: LocalTrainConfig | None = None,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    target_fpr: float = 0.01,
    data_description: str = "",
    progress: Callable[[str], None] | None = None,
    init_state: dict[str, Any] | None = None,
) -> TrainResult:
    """Train, calibrate and write a ``ct-local`` checkpoint from authentic volumes."""
    from medforensics.detect.local import analyse

    config = config or LocalTrainConfig()
    volumes = [v for v in volumes if v.modality == "CT"]
    if not volumes:
        raise ValueError("no CT volumes to train on: give folders of authentic CT DICOM series")
    train_vols, val_vols, split_note = split_volumes(volumes, config.seed)
    if not val_vols:
        raise ValueError(
            "nothing left for validation: give at least 3 patients, or series of 20+ slices"
        )
    say = progress or (lambda message: None)
    say(f"{len(train_vols)} training and {len(val_vols)} validation volumes ({split_note})")

    def make_round(index: int) -> list[tuple[TrainCase, TrainCase]]:
        return pairs(
            list(make_cases(train_vols, attacks, seed=config.seed * 1000 + index, chunk=CHUNK))
        )

    net, history = train_local(make_round, config, progress, init_state=init_state)
    filters = ResidualFilter()

    val_cases = list(
        make_cases(val_vols, attacks, seed=config.seed * 1000 + 999, chunk=CHUNK, per_chunk=2)
    )
    scored = score_cases(lambda volume: analyse(net, filters, volume), val_cases)
    fitted = calibrate(scored, target_fpr)
    fitted.pop("_metrics")
    meta: dict[str, Any] = {
        "detector": "ct-local",
        "modalities": ["CT"],
        "architecture": {"name": "ResidualFCN", "width": config.width},
        "preprocessing": {
            "residual_filters": [
                "second difference along rows / 2",
                "along columns / 2",
                "KV 3x3 / 4",
            ],
            "normalisation": "each filter divided by its median |residual| / 0.6745 on the body "
            "of the centre slice",
            "truncate_sigma": TRUNCATE,
            "context_slices": CONTEXT,
            "map_stride_px": STRIDE,
            "body": "8x8 cells with mean above -500 HU, largest component, holes filled, eroded",
        },
        **fitted,
        "training": {
            **config.to_json(),
            "attacks": list(attacks),
            "chunk_slices": CHUNK,
            "split": split_note,
            "train_volumes": len(train_vols),
            "val_volumes": len(val_vols),
            "patients": len({patient_key(v) for v in volumes}),
            "scanners": sorted({scanner_key(v) for v in volumes}),
            **history,
        },
        "card": {
            "model": "ct-local",
            "software_version": __version__,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "data": data_description or "authentic CT given to `medforensics train`",
            "intended_use": "flag CT series whose noise texture shows local editing (lesion "
            "injection/removal, copy-move, splice, in-painting) for review by a person; "
            "not a diagnostic device",
            "limits": "trained on simulated attacks only; calibrated on few patients; scanners, "
            "kernels and attacks unlike the training data may shift the false-alarm rate",
        },
    }
    path = save_checkpoint(out, net.state_dict(), meta)
    return TrainResult(path, meta, scored)


__all__ = ["DEFAULT_ATTACKS", "ResidualFCN", "TrainResult", "train_ct_local"]
