"""``copy-move``: a region cloned within the image, found by its repeated noise (any modality).

Acquired noise never repeats: two places that carry the very same fine residual pattern were
copied one from the other (a clone stamp, a pasted lesion taken from elsewhere in the same
scan). ``copy_move.duplicated_keypoints`` finds keypoints of the KV residual whose quantised
neighbourhood reappears under one common displacement (and flip, and slice offset), which
survives brightness shifts and flips of the copy. This detector needs no training, so it
carries over to scanners and modalities it has never seen; it sees copy-move only, and not a
copy that was blurred, resampled or re-noised.

Score. There is no learned statistic to calibrate, so the probability is a stated rule, with
the evidence behind it (``python benchmarks/dev_copy_move2d.py``): on 106 authentic MR and
projection images (the held-out Colin27 and chest CR included) not one was flagged, while 38 of
the simulator's 106 copy-move twins were (the others were feathered or too flat to carry
keypoints). An image with no duplicated keypoint gets ``AUTHENTIC_SCORE`` (the 95 % upper
bound of a false-positive rate of 0/106); one whose copy is confirmed by at least
``CONFIRMED`` keypoints gets ``CONFIRMED_SCORE``; in between, ``inconclusive``.
"""

from __future__ import annotations

import numpy as np

from medforensics.detect.base import Detector
from medforensics.detect.copy_move import KeypointTable
from medforensics.detect.features import slice_keypoints
from medforensics.detect.registry import register_detector
from medforensics.detect.types import Detection, Finding, OperatingPoint
from medforensics.io.types import ImageVolume

#: probability given to an image without any repeated keypoint (upper 95 % bound of 0/106)
AUTHENTIC_SCORE = 0.028
#: duplicated keypoints that confirm a copy (two matched pairs under one displacement)
CONFIRMED = 4
#: probability given to a confirmed copy
CONFIRMED_SCORE = 0.97
#: smallest side, in pixels, worth searching
MIN_SIDE = 32


@register_detector
class CopyMoveDetector(Detector):
    """Exact repeats of the noise residual within an image or series (training-free)."""

    name = "copy-move"
    modalities = ()

    def __init__(self) -> None:
        self.operating_point = OperatingPoint(
            manipulated_at=CONFIRMED_SCORE, authentic_below=0.5, target_fpr=None
        )

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "method": "repeated KV-residual keypoints under one displacement (training-free)",
            "score_rule": f"{AUTHENTIC_SCORE} with no repeat; {CONFIRMED_SCORE} with at least "
            f"{CONFIRMED} repeated keypoints",
        }

    def score_of(self, count: int) -> float:
        """The rule-based probability for ``count`` duplicated keypoints."""
        if count <= 0:
            return AUTHENTIC_SCORE
        if count >= CONFIRMED:
            return CONFIRMED_SCORE
        return 0.5

    def detect(self, volume: ImageVolume) -> Detection:
        if min(volume.shape[1:]) < MIN_SIDE:
            return Detection.not_assessed(
                self.name, f"image of {volume.shape[1]}x{volume.shape[2]} pixels is too small"
            )
        table = KeypointTable(volume.shape[2])
        for z in range(volume.shape[0]):  # a slice at a time: only keypoint records are kept
            table.add(slice_keypoints(volume.pixels[z], volume.modality))
        per_slice = table.duplicated()
        count = int(sum(len(found) for found in per_slice))
        score = self.score_of(count)
        findings = []
        for z, found in enumerate(per_slice):
            if len(found) == 0:
                continue
            rows, cols = np.divmod(found.astype(np.int64), table.width)
            findings.extend(_clusters(z, rows, cols, score))
        findings.sort(key=lambda f: -f.score)
        note = (
            f"{count} noise keypoints repeat elsewhere under one displacement"
            if count
            else "no noise pattern repeats within the image"
        )
        return Detection(
            detector=self.name,
            score=score,
            verdict=self.operating_point.verdict(score),
            findings=findings[:6],
            notes=[note],
        )


def _clusters(z: int, rows: np.ndarray, cols: np.ndarray, score: float) -> list[Finding]:
    """One finding per group of duplicated keypoints (source and copy come out separately)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    points = np.stack([rows, cols], axis=1).astype(np.float64)
    labels = (
        np.ones(len(points), dtype=int)
        if len(points) < 2
        else fcluster(
            linkage(points, "single"), t=16.0, criterion="distance"
        )  # regions apart by 16 px stay apart
    )
    out = []
    for label in np.unique(labels):
        group = points[labels == label]
        centre = group.mean(axis=0)
        spread = float(np.sqrt(((group - centre) ** 2).sum(axis=1).max())) if len(group) else 0.0
        out.append(
            Finding(
                kind="local",
                score=score,
                slice=z,
                row=int(np.rint(centre[0])),
                col=int(np.rint(centre[1])),
                radius=max(8.0, spread),
                detail=f"{len(group)} noise keypoints here repeat elsewhere: a copied region "
                "(copy-move or clone stamp)",
            )
        )
    return out


__all__ = ["AUTHENTIC_SCORE", "CONFIRMED", "CONFIRMED_SCORE", "CopyMoveDetector"]
