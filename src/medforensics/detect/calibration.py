"""Turn raw detector statistics into calibrated probabilities (Platt scaling) and verdicts."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from medforensics.detect.types import OperatingPoint


@dataclass(frozen=True)
class PlattCalibration:
    """``p = 1 / (1 + exp(-(a * statistic + b)))``, fitted on authentic and manipulated cases."""

    a: float
    b: float

    def __call__(self, statistic: float | np.ndarray) -> np.ndarray:
        z = self.a * np.asarray(statistic, dtype=np.float64) + self.b
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))

    def probability(self, statistic: float) -> float:
        return float(self(statistic))

    def inverse(self, probability: float) -> float:
        """The statistic at which the calibrated probability equals ``probability``."""
        probability = min(max(probability, 1e-12), 1 - 1e-12)
        return (math.log(probability / (1 - probability)) - self.b) / self.a


def fit_platt(
    statistics: np.ndarray, labels: np.ndarray, l2: float = 1e-3, balanced: bool = True
) -> PlattCalibration:
    """Fit Platt scaling by Newton's method on the log-loss (with Platt's target smoothing).

    Args:
        statistics: raw detector statistics, higher = more suspicious.
        labels: 1 for manipulated, 0 for authentic.
        l2: small ridge penalty that keeps the fit finite on separable data.
        balanced: weight the classes equally, so the probability assumes a 50 % prior rather
            than the ratio of simulated to authentic cases (which is an artefact of the set-up).
    """
    x = np.asarray(statistics, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("statistics and labels must be 1-D arrays of the same length")
    positives, negatives = float(y.sum()), float((1 - y).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("calibration needs both authentic and manipulated cases")
    # Platt (1999): soft targets avoid infinite weights on separable data
    target = np.where(y > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    if balanced:
        weight = np.where(y > 0, 0.5 / positives, 0.5 / negatives) * y.size
    else:
        weight = np.ones_like(y)
    mean, scale = float(x.mean()), float(x.std()) or 1.0
    xs = (x - mean) / scale
    a, b = 1.0, 0.0
    for _ in range(100):
        p = 1 / (1 + np.exp(-(a * xs + b)))
        w = weight * p * (1 - p)
        residual = weight * (p - target)
        grad = np.array([np.sum(residual * xs) + l2 * a, np.sum(residual)])
        hess = np.array(
            [[np.sum(w * xs * xs) + l2, np.sum(w * xs)], [np.sum(w * xs), np.sum(w) + 1e-9]]
        )
        step = np.linalg.solve(hess, grad)
        a, b = a - step[0], b - step[1]
        if np.max(np.abs(step)) < 1e-10:
            break
    # undo the standardisation
    return PlattCalibration(a=float(a / scale), b=float(b - a * mean / scale))


@dataclass
class CalibrationRecord:
    """What a detector's calibration file holds: the map, the operating point, and provenance."""

    calibration: PlattCalibration
    operating_point: OperatingPoint
    card: dict[str, object] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        payload = {
            "calibration": asdict(self.calibration),
            "operating_point": asdict(self.operating_point),
            "card": self.card,
        }
        Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")

    @staticmethod
    def load(path: str | Path) -> CalibrationRecord:
        payload = json.loads(Path(path).read_text())
        return CalibrationRecord(
            calibration=PlattCalibration(**payload["calibration"]),
            operating_point=OperatingPoint(**payload["operating_point"]),
            card=payload.get("card", {}),
        )
