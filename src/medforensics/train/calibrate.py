"""Calibrate a statistic-based detector on authentic scans plus simulated attacks.

Cases are built from authentic volumes (chunks of a few slices, so one series gives several
cases) and their tampered twins from the attack simulator. Patients are split in two: the
calibration (Platt scaling and operating point) is fitted on one half, and the figures reported
come from the other half only.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from medforensics.detect.calibration import CalibrationRecord, PlattCalibration, fit_platt
from medforensics.detect.types import OperatingPoint
from medforensics.evaluate import compute_metrics, split_by_patient, threshold_for_fpr
from medforensics.io.types import ImageVolume
from medforensics.train.cases import chunks


@dataclass
class Case:
    """One calibration case: a statistic with its label, patient and attack."""

    patient: str
    attack: str | None  # None for authentic
    statistic: float
    source: str


@dataclass
class CalibrationReport:
    """What the calibration produced and how it did on held-out patients."""

    record: CalibrationRecord
    fit_patients: list[str]
    held_out_patients: list[str]
    held_out: dict[str, object] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)


def build_cases(
    statistic: Callable[[ImageVolume], float],
    volumes: Sequence[tuple[str, ImageVolume]],
    attacks: Sequence[str],
    seed: int,
    chunk: int = 8,
) -> tuple[list[Case], dict[str, int]]:
    """Statistics for every authentic chunk and one tampered twin per attack."""
    from medforensics.tamper.base import AttackError
    from medforensics.tamper.registry import simulate

    cases: list[Case] = []
    skipped: dict[str, int] = {}
    index = 0
    for patient, volume in volumes:
        for part in chunks(volume, chunk):
            value = statistic(part)
            if not math.isnan(value):
                cases.append(Case(patient, None, value, part.input))
            for attack in attacks:
                index += 1
                try:
                    tampered = simulate(part, attack, seed=[seed, index])
                except (AttackError, ValueError) as exc:
                    skipped[f"{attack}: {exc}"[:120]] = skipped.get(f"{attack}: {exc}"[:120], 0) + 1
                    continue
                value = statistic(dataclasses.replace(part, pixels=tampered.pixels))
                if not math.isnan(value):
                    cases.append(Case(patient, attack, value, part.input))
    return cases, skipped


def _probabilities(calibration: PlattCalibration, cases: Sequence[Case]) -> np.ndarray:
    return calibration(np.array([c.statistic for c in cases]))


def calibrate_cases(
    cases: Sequence[Case],
    seed: int,
    target_fpr: float = 0.01,
    inconclusive_fpr: float = 0.03,
    card: dict[str, object] | None = None,
) -> CalibrationReport:
    """Fit on half of the patients, report on the other half."""
    patients = sorted({c.patient for c in cases})
    split = split_by_patient(patients, fractions=(0.5, 0.0, 0.5), seed=seed)
    fit_set = [c for c in cases if c.patient in set(split.train)]
    held_set = [c for c in cases if c.patient in set(split.test)]
    if not held_set:  # a single patient: report in-sample and say so
        held_set = fit_set
    labels = np.array([c.attack is not None for c in fit_set], dtype=float)
    calibration = fit_platt(np.array([c.statistic for c in fit_set]), labels)
    authentic_probs = _probabilities(calibration, [c for c in fit_set if c.attack is None])
    manipulated_at = min(threshold_for_fpr(authentic_probs, target_fpr), 1.0)
    authentic_below = min(threshold_for_fpr(authentic_probs, inconclusive_fpr), manipulated_at)
    operating_point = OperatingPoint(
        manipulated_at=float(manipulated_at),
        authentic_below=float(authentic_below),
        target_fpr=target_fpr,
    )
    held_labels = np.array([c.attack is not None for c in held_set], dtype=int)
    held_probs = _probabilities(calibration, held_set)
    overall = compute_metrics(held_labels, held_probs, threshold=manipulated_at)
    per_attack: dict[str, object] = {}
    for attack in sorted({c.attack for c in held_set if c.attack}):
        keep = np.array([c.attack in (None, attack) for c in held_set])
        metrics = compute_metrics(held_labels[keep], held_probs[keep], threshold=manipulated_at)
        per_attack[attack] = {
            "auc": _round(metrics.roc_auc),
            "tpr_at_threshold": _round(metrics.at_threshold.recall),
            "cases": int((held_labels[keep] == 1).sum()),
        }
    authentic_held = held_probs[held_labels == 0]
    held_out = {
        "patients": sorted(split.test) or ["(in-sample: only one patient)"],
        "authentic_cases": int(authentic_held.size),
        "manipulated_cases": int((held_labels == 1).sum()),
        "auc": _round(overall.roc_auc),
        "fpr_at_threshold": _round(float(np.mean(authentic_held >= manipulated_at))),
        "tpr_at_threshold": _round(overall.at_threshold.recall),
        "ece": _round(overall.ece),
        "per_attack": per_attack,
    }
    record = CalibrationRecord(calibration, operating_point, {**(card or {}), "held_out": held_out})
    return CalibrationReport(record, sorted(split.train), sorted(split.test), held_out)


def _round(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), 4)
