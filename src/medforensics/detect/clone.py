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

Coherence. Two matched pairs under one displacement are believed only when they are two
pieces of evidence from one region: not side by side on one slice (tied maxima of one place;
on two slices they are two places, as in a copied slab) and within ``COHERENT_PX`` of each
other in the plane (a copied region carries its matches close together).

Noise below the value grid. The premise fails where the noise was quantised away (an 8-bit
export of a low-noise radiograph: a 12-bit image divided by 16 keeps noise of 0.4 grey levels
or less): the residual is then drawn by smooth anatomy and its quantisation, and exact repeats
abound (12 to 50 % of all keypoints, against none in images with noise). When more than
``CHANCE_REPEATS`` of the keypoints outside a believed copy repeat somewhere, a copy is only
``inconclusive``. From ``QUIET_CHANCE`` (1 %) up, a copy must also gather ``VOTES_AMID_CHANCE``
matched pairs under its one transform: TV denoising of the whole Philips series (3 % of patterns
repeating) put 2 to 4 chance votes on each of six displacements and was called ``manipulated``
(``benchmarks/dev_copy_move_chance.py``; now ``authentic``, while a 40 px copy in it is still
found).

Figures (8-bit exports, value // 16 as ``benchmarks/bench_xr_mr.py`` writes its PNGs, of
12-bit ``samples.phantom`` radiographs; ``tests/detect/test_auto_benign.py`` keeps such cases):
without these two checks, 5 of 6 at 384² to 1024² (noise 0.375 grey levels) were
``manipulated`` at 0.97 on 2 or 3 chance votes, side by side or scattered over the image; with
them, none of 72 (512² and 1024², noise 0.1 to 0.75 grey levels) is, 39 are ``inconclusive``
(all at 0.38 grey levels or less). ``dev_copy_move2d.py`` is unchanged: no authentic image
flagged, 38 of the 106 copy-move twins flagged.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from medforensics.detect.base import Detector
from medforensics.detect.copy_move import CHANCE_REPEATS, KeypointTable, SliceKeypoints
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
#: from this share of keypoints repeating by chance (``KeypointTable.chance_repeats``; acquired
#: noise: 0.1 % at most), a copy needs ``VOTES_AMID_CHANCE`` matched pairs under its transform
QUIET_CHANCE = 0.01
#: matched pairs a copy needs under one transform where repeats are common. In
#: ``benchmarks/dev_copy_move_chance.py`` chance gave one transform at most 6 on the smoothed,
#: denoised, 8-bit and JPEG 95 authentic images (JPEG 75's 8x8 block grid gave up to 307, at
#: chance shares above ``CHANCE_REPEATS``, which caps them anyway); a copied 12 px square of
#: acquired CT gets 6, 20 px 30, 40 px 127
VOTES_AMID_CHANCE = 8
#: smallest side, in pixels, worth searching
MIN_SIDE = 32
#: two votes for one displacement confirm a copy when their keypoints are this close: matches of
#: one copied region, not chance coincidences scattered over the image
COHERENT_PX = 32
#: keypoints of one slice closer than this are side by side: tied maxima of one place, not two
#: pieces of evidence
_APART = 2
#: each vote is compared with this many votes for its displacement that follow it in
#: (slice, row, column) order: every one for a chance coincidence, plenty for a real copy
_NEIGHBOUR_VOTES = 8
#: votes are paired among keypoints this close in their run of one hash (as in ``copy_move``)
_MAX_RUN = 6
#: repeats checked for coherence at most (a sample of them beyond): 4.4 million repeats of a
#: 300-slice series of duplicated slices took 32 s and 3.6 GB in full, where a copy is plain
#: from any sample
MAX_COHERENT = 200_000
#: duplicated keypoints closer than this (px) are reported as one region
_GROUP_PX = 16
_GROUP_DISK = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_GROUP_PX + 1, _GROUP_PX + 1))


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
        measured = []
        for z in range(volume.shape[0]):  # a slice at a time: only keypoint records are kept
            measured.append(slice_keypoints(volume.pixels[z], volume.modality))
            table.add(measured[-1])
        repeats = table.duplicated()
        per_slice, _ = coherent(measured, repeats)
        count = int(sum(len(found) for found in per_slice))
        share = sampled_share(repeats)
        # past MAX_COHERENT the copy is massive and only a sample was checked: every repeat
        # under a voted displacement counts as the copy's, not as a chance repeat
        explained = count if share == 1.0 else sum(len(found) for found in repeats)
        chance = table.chance_repeats(explained) if count else 0.0
        if chance >= QUIET_CHANCE:
            # repeats are common (a smoothed image): two or three chance votes can fall on one
            # displacement near each other, so a copy must gather more
            per_slice, _ = coherent(measured, repeats, min_votes=VOTES_AMID_CHANCE)
            count = int(sum(len(found) for found in per_slice))
        score = self.score_of(count)
        if chance > CHANCE_REPEATS:
            score = min(score, 0.5)
        findings = []
        for z, found in enumerate(per_slice):
            if len(found) == 0:
                continue
            rows, cols = np.divmod(found.astype(np.int64), table.width)
            findings.extend(_clusters(z, rows, cols, score, volume.shape[1:]))
        findings.sort(key=lambda f: -f.score)
        notes = [
            f"{count} noise keypoints repeat elsewhere under one displacement"
            if count
            else "no noise pattern repeats within the image"
        ]
        if share < 1.0:
            total = sum(len(found) for found in repeats)
            notes.append(
                f"{total} keypoints repeat: a sample of {share:.1%} of them was checked for a "
                "coherent copy (duplicated slices, or a copy of most of the series)"
            )
        if chance > CHANCE_REPEATS:
            notes.append(
                f"but {chance:.0%} of the other residual patterns repeat somewhere too: the "
                "image's noise is finer than its value grid (an 8-bit export, a smoothed image), "
                "so smooth anatomy repeats exactly and a repeat is no proof of a copy"
            )
        return Detection(
            detector=self.name,
            score=score,
            verdict=self.operating_point.verdict(score),
            findings=findings[:6],
            notes=notes,
        )


def sampled_share(found: Sequence[np.ndarray]) -> float:
    """The share of the repeats ``coherent`` checks: all of them up to ``MAX_COHERENT``."""
    total = sum(len(f) for f in found)
    return 1.0 if total <= MAX_COHERENT else MAX_COHERENT / total


def coherent(
    measured: Sequence[SliceKeypoints], found: list[np.ndarray], min_votes: int = 2
) -> tuple[list[np.ndarray], list[int]]:
    """The duplicated keypoints that belong to a coherent copy, per slice, and the votes of
    each believed transform (largest first).

    Args:
        measured: every slice's keypoints (for their hashes and flips).
        found: per slice, the flat positions of duplicated keypoints
            (``KeypointTable.duplicated``).
        min_votes: matched pairs a transform needs in all (besides two coherent ones).

    Returns:
        Per slice, the positions of ``found`` under a displacement (and flip, and slice offset)
        that has two votes from two places within ``COHERENT_PX`` pixels of each other and
        ``min_votes`` votes in all (see the module notes); and those transforms' votes. With
        more than ``MAX_COHERENT`` repeats in all, a fixed random sample of that size is
        checked, and only its members can be returned.
    """
    none: tuple[list[np.ndarray], list[int]] = ([np.zeros(0, np.int64) for _ in found], [])
    share = sampled_share(found)
    if share < 1.0:
        # a massive copy (duplicated slices: millions of repeats): a fixed sample of the
        # repeats is enough to confirm it, and the voting below needs memory in proportion
        sample = np.random.default_rng(0)
        found = [f[sample.random(len(f)) < share] for f in found]
    kept = {
        k: np.isin(m.positions, f)
        for k, (m, f) in enumerate(zip(measured, found, strict=True))
        if len(f)
    }
    if not kept:
        return none
    z = np.concatenate([np.full(int(keep.sum()), k, np.int64) for k, keep in kept.items()])
    flat = np.concatenate(
        [measured[k].positions[keep].astype(np.int64) for k, keep in kept.items()]
    )
    hashes = np.concatenate([measured[k].hashes[keep] for k, keep in kept.items()])
    flips = np.concatenate(
        [measured[k].orientation[keep].astype(np.int64) for k, keep in kept.items()]
    )
    width = measured[0].width
    y, x = np.divmod(flat, width)
    # votes: pairs sharing a hash a few ranks apart in the run of that hash (as copy_move forms
    # them), source and copy not side by side
    order = np.argsort(hashes, kind="stable")
    firsts, seconds = [], []
    for lag in range(1, min(_MAX_RUN, order.size)):
        same = hashes[order[lag:]] == hashes[order[:-lag]]
        firsts.append(order[:-lag][same])
        seconds.append(order[lag:][same])
    if not firsts:
        return none
    i, j = np.concatenate(firsts), np.concatenate(seconds)
    apart = (z[i] != z[j]) | (np.maximum(abs(y[j] - y[i]), abs(x[j] - x[i])) >= _APART)
    i, j = i[apart], j[apart]
    # one integer per transform: flip, slice offset, displacement (a flipped axis keeps its sum)
    flip = flips[i] ^ flips[j]
    dy = np.where(flip & 2, y[j] + y[i], y[j] - y[i])
    dx = np.where(flip & 1, x[j] + x[i], x[j] - x[i])
    n_z, n_y, n_x = 2 * len(found) + 1, 3 * (int(y.max()) + 1) + 1, 3 * width + 1
    code = ((flip * n_z + z[j] - z[i] + n_z // 2) * n_y + dy + n_y // 3) * n_x + dx + n_x // 3
    # each vote against the next few votes for its transform, in (slice, row, col) order; the
    # distance is in-plane, so the votes of a slab copied across slices are near each other
    ranked = np.lexsort((x[i], y[i], z[i], code))
    believed_codes = []
    for lag in range(1, min(_NEIGHBOUR_VOTES, ranked.size - 1) + 1):
        a, b = i[ranked[:-lag]], i[ranked[lag:]]
        near = np.maximum(abs(y[a] - y[b]), abs(x[a] - x[b]))
        # two places: not side by side on one slice, or on two slices (a copied slab)
        two_places = (z[a] != z[b]) | (near >= _APART)
        two_places &= (code[ranked[:-lag]] == code[ranked[lag:]]) & (near <= COHERENT_PX)
        believed_codes.append(code[ranked[:-lag]][two_places])
    believed = (
        np.isin(code, np.concatenate(believed_codes))
        if believed_codes
        else np.zeros(code.size, dtype=bool)
    )
    codes, votes = np.unique(code[believed], return_counts=True)
    believed &= np.isin(code, codes[votes >= min_votes])
    hit = np.zeros(z.size, dtype=bool)
    hit[i[believed]] = True
    hit[j[believed]] = True
    tally = sorted((int(v) for v in votes if v >= min_votes), reverse=True)
    return [flat[hit & (z == k)] for k in range(len(found))], tally


def _clusters(
    z: int, rows: np.ndarray, cols: np.ndarray, score: float, shape: tuple[int, int]
) -> list[Finding]:
    """One finding per group of duplicated keypoints (source and copy come out separately).

    Keypoints within ``_GROUP_PX`` of each other form one group: each is drawn as a disk of half
    that radius and the disks' connected regions are the groups (single linkage at that
    distance, in time linear in the image size: a series of duplicated slices has tens of
    thousands of repeated keypoints a slice, and hierarchical clustering took seconds for each).
    """
    canvas = np.zeros(shape, dtype=np.uint8)
    canvas[rows, cols] = 1
    grown = cv2.dilate(canvas, _GROUP_DISK)
    _, labels = cv2.connectedComponents(grown, connectivity=8)
    group = labels[rows, cols]
    out = []
    for label in np.unique(group):
        member = group == label
        points = np.stack([rows[member], cols[member]], axis=1).astype(np.float64)
        centre = points.mean(axis=0)
        spread = float(np.sqrt(((points - centre) ** 2).sum(axis=1).max()))
        out.append(
            Finding(
                kind="local",
                score=score,
                slice=z,
                row=int(np.rint(centre[0])),
                col=int(np.rint(centre[1])),
                radius=max(8.0, spread),
                detail=f"{len(points)} noise keypoints here repeat elsewhere: a copied region "
                "(copy-move or clone stamp)",
            )
        )
    return out


__all__ = [
    "AUTHENTIC_SCORE",
    "CHANCE_REPEATS",
    "COHERENT_PX",
    "CONFIRMED",
    "CONFIRMED_SCORE",
    "CopyMoveDetector",
    "coherent",
    "sampled_share",
]
