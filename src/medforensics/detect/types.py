"""What detectors return: findings and a calibrated score, before they become scan results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Verdict = Literal["authentic", "manipulated", "inconclusive"]

#: finding kinds used across detectors; new detectors may add their own
FINDING_KINDS = ("local", "global", "metadata", "signature")


@dataclass(frozen=True)
class Finding:
    """One suspicious location.

    Attributes:
        kind: ``local`` (a region), ``global`` (whole image), ``metadata`` (header/geometry),
            ``signature`` (digital signature).
        score: how suspicious this location is, in [0, 1].
        slice: 0-based index along the sorted series (0 for 2D images).
        row: pixel row of the centre.
        col: pixel column of the centre.
        radius: approximate radius of the region in pixels (0 when not spatial).
        detail: a short human-readable explanation.
    """

    kind: str
    score: float
    slice: int
    row: int
    col: int
    radius: float = 0.0
    detail: str = ""


@dataclass(frozen=True)
class OperatingPoint:
    """Thresholds that turn a calibrated score into a verdict.

    ``score >= manipulated_at`` gives ``manipulated``; ``score < authentic_below`` gives
    ``authentic``; anything between is ``inconclusive``.
    """

    manipulated_at: float = 0.5
    authentic_below: float = 0.5
    target_fpr: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.authentic_below <= self.manipulated_at <= 1.0:
            raise ValueError(
                f"need 0 <= authentic_below ({self.authentic_below}) <= manipulated_at "
                f"({self.manipulated_at}) <= 1"
            )

    def verdict(self, score: float) -> Verdict:
        if score >= self.manipulated_at:
            return "manipulated"
        if score < self.authentic_below:
            return "authentic"
        return "inconclusive"


@dataclass
class Detection:
    """A detector's answer for one volume.

    Attributes:
        detector: registry name of the detector that answered.
        score: calibrated probability of manipulation.
        verdict: from the detector's operating point, or ``inconclusive`` when the input could
            not be assessed (too small, blank...).
        findings: most suspicious first.
        anomaly_map: optional ``(slices, rows, cols)`` float32 map in [0, 1] at image resolution
            or a stated lower resolution (``map_stride``), for heatmaps.
        map_stride: pixels per map cell along rows and cols.
        notes: why the verdict is what it is, for people.
    """

    detector: str
    score: float
    verdict: Verdict
    findings: list[Finding] = field(default_factory=list)
    anomaly_map: np.ndarray | None = None
    map_stride: int = 1
    notes: list[str] = field(default_factory=list)

    @classmethod
    def not_assessed(cls, detector: str, reason: str) -> Detection:
        """An ``inconclusive`` answer for an image the detector cannot judge, saying why."""
        return cls(detector=detector, score=0.5, verdict="inconclusive", notes=[reason])
