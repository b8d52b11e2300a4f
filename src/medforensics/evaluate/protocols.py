"""The protocol extras of ``medforensics evaluate``, beyond the in-distribution figures.

- robustness: every case, authentic and tampered alike, laundered by each op in turn, then scored;
- cross-scanner with ``--retrain``: for each scanner, ct-local trained on the other scanners'
  volumes and tested on that scanner's cases;
- leave-one-attack-out with ``--retrain``: for each attack, ct-local trained without it and
  tested on held-out data, on that attack and on the attacks it saw.

Retraining writes checkpoints under the models folder; nothing else here writes files. The engine
(config, cases, scoring, metrics) lives in ``run``, which imports this module lazily, so the
dependency goes one way: ``protocols`` imports ``run``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medforensics.detect.base import Detector
from medforensics.evaluate.metrics import compute_metrics
from medforensics.evaluate.run import (
    CASE_SEED_OFFSET,
    CaseScore,
    EvalCase,
    EvaluationConfig,
    EvaluationError,
    Progress,
    _rate,
    level_arrays,
    score_cases,
    simulated_cases,
)
from medforensics.evaluate.splits import leave_one_scanner_out, split_by_patient
from medforensics.io.types import ImageVolume
from medforensics.train.cases import TrainCase, on_value_grid, patient_key, scanner_key, slab


def _short_figures(scored: Sequence[CaseScore], threshold: float) -> dict[str, Any]:
    """AUC, AP, TPR at 5 % FPR and the rates at the threshold, for protocol tables."""
    labels, scores, _ = level_arrays(scored, "case")
    report = compute_metrics(labels, scores, threshold=threshold)
    flagged = scores >= threshold
    return {
        "authentic_cases": report.n_authentic,
        "manipulated_cases": report.n_manipulated,
        "roc_auc": report.roc_auc,
        "average_precision": report.average_precision,
        "tpr_at_fpr_0.05": report.tpr_at_fpr.get("0.05"),
        "tpr_at_threshold": _rate(flagged[labels == 1].tolist()),
        "fpr_at_threshold": _rate(flagged[labels == 0].tolist()),
        "localisation_hit_rate": _rate([bool(s.hit) for s in scored if s.hit is not None]),
    }


def robustness(
    detector: Detector,
    cases: Sequence[EvalCase],
    ops: Sequence[str],
    threshold: float,
    seed: int,
    progress: Progress,
) -> dict[str, Any]:
    """Every case (authentic and tampered) laundered by each op in turn, then detected."""
    from medforensics.tamper.launder import apply_laundering, sample_laundering

    per_op: dict[str, Any] = {}
    for op_index, op in enumerate(ops):
        progress(f"robustness: laundering every case with {op}")

        def laundered(index: int, case: TrainCase, op: str = op, k: int = op_index) -> ImageVolume:
            rng = np.random.default_rng([seed, 77, k, index])
            steps = sample_laundering(case.volume, [op], rng)
            pixels = apply_laundering(case.volume.pixels, case.volume, steps, rng)
            grid = on_value_grid(case.volume.pixels, pixels)  # as written back to a file
            return dataclasses.replace(case.volume, pixels=grid, problems=[])

        failures: Counter[str] = Counter()
        scored = score_cases(detector, cases, progress, transform=laundered, failures=failures)
        per_op[op] = {**_short_figures(scored, threshold), "unscored": sum(failures.values())}
    return {"ops": per_op, "rule": "authentic and tampered cases laundered alike, then scored"}


def _train_config(config: EvaluationConfig) -> Any:
    from medforensics.train.local import LocalTrainConfig

    return LocalTrainConfig(
        rounds=config.rounds, steps_per_round=config.steps, seed=config.seed, width=config.width
    )


def _retrain(
    volumes: Sequence[ImageVolume],
    path: Path,
    config: EvaluationConfig,
    attacks: Sequence[str],
    progress: Progress,
) -> Detector:
    from medforensics.detect.local import LocalDetector
    from medforensics.train.pipeline import train_ct_local

    train_ct_local(
        volumes,
        path,
        _train_config(config),
        attacks=attacks,
        data_description=f"medforensics evaluate --retrain ({path.stem})",
        progress=progress,
    )
    return LocalDetector(checkpoint=path)


def cross_scanner_retrain(
    volumes: Sequence[ImageVolume],
    scored: Sequence[CaseScore],
    cases: Sequence[EvalCase],
    config: EvaluationConfig,
    models: Path,
    threshold: float,
    progress: Progress,
) -> dict[str, Any]:
    """For each scanner: train ct-local on the other scanners' volumes, test on that scanner."""
    try:
        folds = leave_one_scanner_out(
            [scanner_key(v) for v in volumes], [patient_key(v) for v in volumes]
        )
    except ValueError as exc:
        raise EvaluationError(f"--retrain with cross-scanner: {exc}") from None
    out = {}
    for number, fold in enumerate(folds):
        progress(f"cross-scanner: training without {fold.held_out}")
        train_vols = [volumes[i] for i in fold.train_indices]
        test = [c for c in cases if c.case.scanner == fold.held_out]
        entry: dict[str, Any] = {
            "train_volumes": len(train_vols),
            "dropped_patients": len(fold.dropped_patients),
            "given_model": _short_figures(
                [s for s in scored if s.scanner == fold.held_out], threshold
            ),
        }
        try:
            detector = _retrain(
                train_vols, models / f"xs-{number}.pt", config, config.attacks, progress
            )
        except ValueError as exc:
            out[fold.held_out] = {**entry, "error": str(exc)}
            continue
        retrained = score_cases(detector, test, progress)
        own = float(getattr(detector, "operating_point").manipulated_at)  # noqa: B009
        out[fold.held_out] = {**entry, "retrained": _short_figures(retrained, own)}
    return {"folds": out, "checkpoints": str(models)}


def holdout(
    volumes: Sequence[ImageVolume], seed: int
) -> tuple[list[ImageVolume], list[ImageVolume], str]:
    """Training and test volumes: by patient when there are two or more, else by slab."""
    keys = [patient_key(v) for v in volumes]
    if len(set(keys)) >= 2:
        split = split_by_patient(keys, fractions=(0.75, 0.0, 0.25), seed=seed)
        test = set(split.test)
        train = [v for v, k in zip(volumes, keys, strict=True) if k not in test]
        held = [v for v, k in zip(volumes, keys, strict=True) if k in test]
        return train, held, f"by patient: {len(split.train)} training, {len(test)} test patients"
    train, held = [], []
    for volume in volumes:
        cut = int(volume.shape[0] * 0.75)
        train.append(slab(volume, 0, max(1, cut - 2)))
        if cut < volume.shape[0]:
            held.append(slab(volume, cut, volume.shape[0]))
    return train, held, "by slab: one patient, so the last quarter of each series is the test set"


def leave_one_attack_out_retrain(
    volumes: Sequence[ImageVolume], config: EvaluationConfig, models: Path, progress: Progress
) -> dict[str, Any]:
    """For each attack A: train ct-local without A; test A and the seen attacks on held-out data."""
    if len(config.attacks) < 2:
        raise EvaluationError("leave-one-attack-out needs at least two attacks (--attack)")
    train_vols, test_vols, note = holdout(volumes, config.seed)
    errors: dict[str, int] = {}
    test = simulated_cases(
        test_vols,
        config.attacks,
        CASE_SEED_OFFSET + config.seed + 500,
        config.chunk,
        config.per_chunk,
        errors,
    )
    out: dict[str, Any] = {}
    for attack in config.attacks:
        progress(f"leave-one-attack-out: training without {attack}")
        others = [a for a in config.attacks if a != attack]
        try:
            detector = _retrain(train_vols, models / f"loao-{attack}.pt", config, others, progress)
        except ValueError as exc:
            out[attack] = {"error": str(exc)}
            continue
        threshold = float(getattr(detector, "operating_point").manipulated_at)  # noqa: B009
        scored = score_cases(detector, test, progress)
        out[attack] = {
            "held_out": _short_figures(
                [s for s in scored if s.attack in (None, attack)], threshold
            ),
            "seen_attacks": _short_figures([s for s in scored if s.attack != attack], threshold),
        }
    return {"split": note, "folds": out, "checkpoints": str(models), "attack_errors": errors}
