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

import dataclasses
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
from medforensics.io.types import PROJECTION_MODALITIES, ImageVolume
from medforensics.tamper.base import DEFAULT_ATTACKS
from medforensics.train.cases import TrainCase, make_cases, patient_key, scanner_key, slab
from medforensics.train.local import LocalTrainConfig, train_local

#: slices per case cut from a series
CHUNK = 5
#: a training round has at least this many tampered twins when the data allow it
MIN_PAIRS_PER_ROUND = 64
#: ... but never more than this many twins of one authentic chunk per round
MAX_TWINS = 16
#: with fewer authentic validation cases than this, their rotations and flips are added
MIN_AUTHENTIC_VALIDATION = 8


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


def dihedral_variants(volume: ImageVolume) -> list[ImageVolume]:
    """The 8 rotations and flips of a volume's slices (the first is the volume itself)."""
    out = []
    for k in range(4):
        for flip in (False, True):
            pixels = np.rot90(volume.pixels, k, axes=(1, 2))
            if flip:
                pixels = pixels[:, :, ::-1]
            suffix = "" if (k, flip) == (0, False) else f"#rot{90 * k}{'-flip' if flip else ''}"
            out.append(
                dataclasses.replace(
                    volume, input=volume.input + suffix, pixels=np.ascontiguousarray(pixels)
                )
            )
    return out


def split_volumes(
    volumes: Sequence[ImageVolume],
    seed: int,
    val_fraction: float = 0.25,
    patients: dict[str, str] | None = None,
) -> tuple[list[ImageVolume], list[ImageVolume], str]:
    """Training and validation volumes, by patient when there are enough patients.

    ``patients`` optionally maps ``volume.input`` to a patient key (overrides the header's).
    """
    keys = [(patients or {}).get(v.input) or patient_key(v) for v in volumes]
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


@dataclass(frozen=True)
class LocalFamily:
    """What differs between the ``ct-local``, ``xr-local`` and ``mr-local`` models."""

    detector: str
    modalities: tuple[str, ...]
    chunk: int  # slices per case
    body: str  # how the scored region is found, for the card
    intended_use: str
    #: tampered twins wanted per round and for validation (0: one twin per chunk, as for CT,
    #: where series give plenty of chunks; radiograph and MR sets are often a few images)
    min_pairs: int = MIN_PAIRS_PER_ROUND


FAMILIES: dict[str, LocalFamily] = {
    "CT": LocalFamily(
        "ct-local",
        ("CT",),
        CHUNK,
        "8x8 cells with mean above -500 HU, largest component, holes filled, eroded",
        "flag CT series whose noise texture shows local editing (lesion injection/removal, "
        "copy-move, splice, in-painting) for review by a person; not a diagnostic device",
        min_pairs=0,
    ),
    "XR": LocalFamily(
        "xr-local",
        PROJECTION_MODALITIES,
        1,
        "8x8 cells whose mean is above the image's 30th percentile of cell means, largest "
        "component, holes filled, eroded",
        "flag radiographs (DICOM CR/DX or PNG/JPEG/TIFF) whose noise texture shows local editing "
        "(lesion injection/removal, copy-move, splice, in-painting) for review by a person; not "
        "a diagnostic device",
    ),
    "MR": LocalFamily(
        "mr-local",
        ("MR",),
        CHUNK,
        "8x8 cells whose mean is above the slice's 30th percentile of cell means, largest "
        "component, holes filled, eroded",
        "flag MR series whose noise texture shows local editing (lesion injection/removal, "
        "copy-move, splice, in-painting) for review by a person; not a diagnostic device",
    ),
}


def family_of(modality: str) -> str:
    """The ``FAMILIES`` key whose models take images of ``modality`` (``CT``, ``XR``, ``MR``)."""
    for key, family in FAMILIES.items():
        if modality in family.modalities:
            return key
    raise ValueError(
        f"no local model for modality {modality!r}: models exist for CT, MR and radiographs "
        f"({', '.join(PROJECTION_MODALITIES)})"
    )


def train_local_model(
    volumes: Sequence[ImageVolume],
    out: str | Path,
    config: LocalTrainConfig | None = None,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    target_fpr: float = 0.01,
    data_description: str = "",
    progress: Callable[[str], None] | None = None,
    init_state: dict[str, Any] | None = None,
    modality: str = "CT",
    patients: dict[str, str] | None = None,
) -> TrainResult:
    """Train, calibrate and write a local-network checkpoint from authentic volumes.

    ``modality`` picks the family (``CT``, ``XR`` for radiographs, ``MR``); volumes of other
    modalities are ignored. ``patients`` optionally maps ``volume.input`` to a patient key (for
    images whose headers do not identify the patient, e.g. PNG files).
    """
    from medforensics.detect.local import analyse

    family = FAMILIES[modality]
    config = config or LocalTrainConfig()
    volumes = [v for v in volumes if v.modality in family.modalities]
    if not volumes:
        raise ValueError(
            f"no {modality} images to train on: give folders of authentic "
            f"{', '.join(family.modalities)} images"
        )
    train_vols, val_vols, split_note = split_volumes(volumes, config.seed, patients=patients)
    if not val_vols:
        raise ValueError(
            "nothing left for validation: give at least 3 patients, or series of 20+ slices"
        )
    say = progress or (lambda message: None)
    say(f"{len(train_vols)} training and {len(val_vols)} validation volumes ({split_note})")
    # few authentic chunks (a handful of radiographs) get more twins each, so that every round
    # still has enough tampered examples; a large CT set keeps one twin per chunk
    n_chunks = sum(max(1, v.shape[0] // family.chunk) for v in train_vols)
    twins = int(min(MAX_TWINS, max(1, math.ceil(family.min_pairs / n_chunks))))

    def make_round(index: int) -> list[tuple[TrainCase, TrainCase]]:
        return pairs(
            list(
                make_cases(
                    train_vols,
                    attacks,
                    seed=config.seed * 1000 + index,
                    chunk=family.chunk,
                    per_chunk=twins,
                    patients=patients,
                )
            )
        )

    net, history = train_local(make_round, config, progress, init_state=init_state)
    filters = ResidualFilter()

    val_chunks = sum(max(1, v.shape[0] // family.chunk) for v in val_vols)
    per_chunk = int(min(MAX_TWINS, max(2, math.ceil(family.min_pairs / val_chunks))))
    if family.min_pairs and val_chunks < MIN_AUTHENTIC_VALIDATION:
        # a handful of validation images: their rotations and flips are further authentic
        # images (same patients, other orientation of the noise and anatomy), so the
        # operating point rests on more than one or two numbers; the card says so
        val_vols = [variant for v in val_vols for variant in dihedral_variants(v)]
        split_note += (
            f"; {val_chunks} validation image(s), each also used in its 7 other rotations "
            "and flips for calibration"
        )
    val_cases = list(
        make_cases(
            val_vols,
            attacks,
            seed=config.seed * 1000 + 999,
            chunk=family.chunk,
            per_chunk=per_chunk,
            patients=patients,
        )
    )
    scored = score_cases(lambda volume: analyse(net, filters, volume), val_cases)
    fitted = calibrate(scored, target_fpr)
    fitted.pop("_metrics")
    keys = {(patients or {}).get(v.input) or patient_key(v) for v in volumes}
    meta: dict[str, Any] = {
        "detector": family.detector,
        "modalities": list(family.modalities),
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
            "context_slices": CONTEXT if family.chunk > 1 else 0,
            "map_stride_px": STRIDE,
            "body": family.body,
        },
        **fitted,
        "training": {
            **config.to_json(),
            "attacks": list(attacks),
            "chunk_slices": family.chunk,
            "twins_per_chunk": twins,
            "split": split_note,
            "train_volumes": len(train_vols),
            "val_volumes": len(val_vols),
            "patients": len(keys),
            "scanners": sorted({scanner_key(v) for v in volumes}),
            **history,
        },
        "card": {
            "model": family.detector,
            "software_version": __version__,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "data": data_description or f"authentic {modality} given to `medforensics train`",
            "intended_use": family.intended_use,
            "limits": "trained on simulated attacks only; calibrated on few patients; scanners, "
            "kernels and attacks unlike the training data may shift the false-alarm rate",
        },
    }
    path = save_checkpoint(out, net.state_dict(), meta)
    return TrainResult(path, meta, scored)


def train_ct_local(
    volumes: Sequence[ImageVolume],
    out: str | Path,
    config: LocalTrainConfig | None = None,
    **kwargs: Any,
) -> TrainResult:
    """``train_local_model`` for CT (``ct-local``); the same keyword arguments but ``modality``."""
    return train_local_model(volumes, out, config, modality="CT", **kwargs)


__all__ = [
    "DEFAULT_ATTACKS",
    "FAMILIES",
    "ResidualFCN",
    "TrainResult",
    "family_of",
    "train_ct_local",
    "train_local_model",
]
