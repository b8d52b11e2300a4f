"""``noise-mismatch``: a CT region whose noise level is far from its surroundings' (training-free).

Why. A patch cut from another scan carries that scan's noise: another kernel, dose or scanner
puts it at a level the slice around it does not have. ``ct-local`` was trained on twins whose
noise was matched and does not see such a patch: pasted disks of 20-30 px from the Siemens B70f
and Philips series into the held-out GE slices left `auto`'s AUC at 0.50-0.51, while
``noise-residual``'s statistic (each 16 px tile's noise level against its neighbours, in
units of the series' own spread of such deviations, ``noise_residual.tile_statistics``) ranked
them at 0.70-0.81 (``benchmarks/dev_ct_splice.py``). Its own Platt calibration flags too much
authentic CT for ``auto``'s CT route, so this applies a stated rule to the same statistic,
set above every authentic CT at hand.

Score. ``probability`` maps the statistic ``S`` (the largest cluster deviation over the series,
divided by the expected maximum of as many standard normals) to p = 0.01 at ``CLEAR_BELOW``
and 0.5 at ``MIDDLE``. The anchors: on the 51 authentic CT units of ``dev_lossy.py`` and the
three whole Philips and Siemens series, as acquired and under ``dev_recon.py``'s stand-ins for
other reconstructions, S reached at most 4.50 (white noise of 10 HU added; 4.03 as acquired):
``python benchmarks/dev_noise_mismatch.py`` prints these and the splices' figures.
Lossy-compressed pixels are not assessed (compression makes noise uneven), as in ``noise-hole``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from medforensics.detect.base import Detector
from medforensics.detect.calibration import PlattCalibration
from medforensics.detect.compression import Compression, assess
from medforensics.detect.noise_residual import NoiseResidualDetector, tile_statistics
from medforensics.detect.registry import register_detector
from medforensics.detect.types import Detection, OperatingPoint
from medforensics.io.types import ImageVolume

#: p = 0.01 here: the largest statistic of the authentic CT at hand and its stand-ins
CLEAR_BELOW = 4.5
#: p = 0.5 here: ``manipulated``
MIDDLE = 5.0
#: the stated rule as a logistic: p = 0.01 at CLEAR_BELOW, 0.5 at MIDDLE
RULE = PlattCalibration(
    a=math.log(99.0) / (MIDDLE - CLEAR_BELOW),
    b=-math.log(99.0) / (MIDDLE - CLEAR_BELOW) * MIDDLE,
)
OPERATING_POINT = OperatingPoint(manipulated_at=0.5, authentic_below=0.2)
#: tile side (px), as ``noise-residual``'s
TILE = 16
MAX_FINDINGS = 4


def probability(statistic: float) -> float:
    """The rule-based probability of an edit for the normalised statistic (0 for NaN)."""
    return RULE.probability(statistic) if math.isfinite(statistic) else 0.0


def probabilities(statistics: np.ndarray) -> np.ndarray:
    """``probability`` of each value of an array (float32; -inf gives 0)."""
    return RULE(statistics).astype(np.float32)


@register_detector
class NoiseMismatchDetector(Detector):
    """CT regions whose noise level disagrees with their surroundings' (training-free)."""

    name = "noise-mismatch"
    modalities = ("CT",)

    def __init__(self) -> None:
        self.operating_point = OPERATING_POINT
        self._locator = NoiseResidualDetector(tile=TILE, max_findings=MAX_FINDINGS)

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "method": "noise-residual's tile noise-level statistic under a stated rule "
            "(training-free)",
            "score_rule": f"p = 0.01 at {CLEAR_BELOW:g}, 0.5 at {MIDDLE:g} (the largest "
            "authentic CT statistic at hand: 4.5)",
        }

    def detect(self, volume: ImageVolume, compression: Compression | None = None) -> Detection:
        """``compression``: the evidence when the caller has it already (``auto`` does)."""
        if volume.modality != "CT":
            return Detection.not_assessed(self.name, f"{volume.modality} is not CT")
        compression = compression or assess(volume)
        if compression.lossy:
            return Detection.not_assessed(
                self.name,
                "lossy-compressed pixels (" + "; ".join(compression.reasons()) + "): "
                "compression makes the noise level uneven, so a mismatch proves nothing",
            )
        stats = tile_statistics(volume, TILE, radiograph=False)
        statistic = stats.normalised_max
        if not math.isfinite(statistic):
            return Detection.not_assessed(
                self.name, "too few tiles of tissue to compare noise levels"
            )
        score = probability(statistic)
        norm = math.sqrt(2.0 * math.log(stats.n_valid))
        tile_prob = probabilities(np.nan_to_num(stats.cluster, nan=-np.inf) / norm)
        findings = [
            replace(
                finding,
                detail="noise level far from the surrounding tissue's: a patch from another "
                "scan, kernel or dose",
            )
            for finding in self._locator.findings(stats, tile_prob)
            if finding.score >= OPERATING_POINT.authentic_below
        ]
        return Detection(
            detector=self.name,
            score=score,
            verdict=self.operating_point.verdict(score),
            findings=findings,
            notes=[
                f"largest noise-level mismatch {statistic:.2f} (authentic CT at hand: 4.5 at "
                f"most; {MIDDLE:g} is manipulated) over {stats.n_valid} tiles"
            ],
        )


__all__ = ["RULE", "NoiseMismatchDetector", "probabilities", "probability"]
