"""Copy-move cue: small noise patterns that repeat exactly elsewhere in the volume.

Authentic noise never repeats, so a region cloned within a scan gives itself away by carrying
the very same noise as its source. The cue survives the usual disguises: the copy may be
flipped, placed on another slice, or shifted in brightness, since the KV residual it is read
from is symmetric and ignores constants.

Keypoints are local maxima of the KV residual; each gets a hash of its quantised 3×3
neighbourhood that does not depend on flips (``keypoint_hashes``). Pairs of keypoints sharing
a hash vote for a transform (slice offset, flip, displacement), and a transform with at least
``MIN_MATCHES`` votes is believed to be a copy (``KeypointTable.duplicated``,
``duplicated_keypoints``). Only compact records are kept (13 bytes a keypoint), so a volume
can be measured a few slices at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

#: keypoints are maxima of the residual magnitude over this many pixels on a side
_PEAK = 3
#: keypoint windows are this many pixels on a side (odd)
_WINDOW = 3
#: keypoints are at least this many robust noise sigmas strong
_KEYPOINT_SIGMAS = 1.0
#: a window with fewer non-zero quantised residuals than this is too flat to identify
_MIN_NONZERO = 6
#: matched keypoint pairs that share one displacement (and flip) before a copy is believed
MIN_MATCHES = 2
#: identical hashes shared by more keypoints than this are a repeated pattern, not a copy
_MAX_RUN = 6
_HASH_WEIGHTS = np.random.default_rng(20240611).integers(1, 2**62, size=49, dtype=np.int64)


class SliceKeypoints(Protocol):
    """One slice's keypoints, as ``features.SliceMeasurements`` holds them.

    Attributes:
        positions: flat indices ``row * width + col``, ``(k,)`` int32 (or int64).
        hashes: flip-free hash of the quantised residual around each keypoint, ``(k,)`` int64.
        orientation: which flip (0 none, 1 left-right, 2 up-down, 3 both) gave the hash.
        width: columns of the slice.
    """

    positions: np.ndarray
    hashes: np.ndarray
    orientation: np.ndarray
    width: int


def no_keypoints() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, hashes and orientations of a slice without keypoints (empty arrays)."""
    return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int8)


def rows_cols(positions: np.ndarray, width: int) -> np.ndarray:
    """Flat pixel indices as ``(k, 2)`` int64 rows and columns."""
    ys, xs = np.divmod(positions.astype(np.int64), width)
    return np.stack([ys, xs], axis=1)


def _flip_weights(window: int) -> np.ndarray:
    """Hash weights for the four flips of a window: ``(window², 4)``.

    Hashing a flipped window equals hashing the window with permuted weights, so all four flips
    cost one matrix product.
    """
    base = _HASH_WEIGHTS[: window**2].reshape(window, window)
    variants = [base, base[:, ::-1], base[::-1, :], base[::-1, ::-1]]
    return np.stack([v.ravel() for v in variants], axis=1)


def _local_maxima(magnitude: np.ndarray, size: int) -> np.ndarray:
    """``magnitude`` equals the maximum of its ``size``×``size`` neighbourhood (interior only)."""
    half = size // 2
    rows = magnitude[:, : magnitude.shape[1] - 2 * half].copy()
    for k in range(1, size):
        np.maximum(rows, magnitude[:, k : magnitude.shape[1] - 2 * half + k], out=rows)
    peak = rows[: rows.shape[0] - 2 * half].copy()
    for k in range(1, size):
        np.maximum(peak, rows[k : rows.shape[0] - 2 * half + k], out=peak)
    out = np.zeros(magnitude.shape, dtype=bool)
    out[half:-half, half:-half] = magnitude[half:-half, half:-half] == peak
    return out


def keypoint_hashes(
    kv: np.ndarray, usable: np.ndarray, q: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keypoints (local maxima of ``|kv|``) and a flip-free hash of the residual around each.

    A region copied elsewhere, even flipped, turned or shifted in mean, carries the same KV
    residual (the filter is symmetric and ignores constants), so its keypoints and their
    quantised windows reappear exactly at the copy.
    """
    magnitude = np.abs(kv)
    sample = magnitude[::3, ::3][usable[::3, ::3]]
    sample = sample[sample > 0]
    if sample.size < _WINDOW**2:
        return no_keypoints()
    sigma = float(np.median(sample)) / 0.6745
    half = max(_WINDOW, _PEAK) // 2
    candidate = _local_maxima(magnitude, _PEAK) & (magnitude > _KEYPOINT_SIGMAS * sigma) & usable
    candidate[:half], candidate[-half:], candidate[:, :half], candidate[:, -half:] = (
        False,
        False,
        False,
        False,
    )
    flat = np.flatnonzero(candidate)
    if flat.size == 0:
        return no_keypoints()
    # integer data give KV residuals in quarter steps: quantise exactly there; else to sigma/8
    step = 0.25 if q == 0.5 else max(sigma / 8.0, 1e-12)
    reach = np.arange(-(_WINDOW // 2), _WINDOW // 2 + 1)
    offsets = (reach[:, None] * kv.shape[1] + reach[None, :]).ravel()
    # column by column: reductions along a short second axis are slow in numpy
    columns = [np.rint(np.take(kv, flat + offset) / step).astype(np.int64) for offset in offsets]
    keep = sum((column != 0).astype(np.int8) for column in columns) >= _MIN_NONZERO
    flat = flat[keep]
    columns = [column[keep] for column in columns]
    weights = _flip_weights(_WINDOW)
    hashes = [sum(c * w for c, w in zip(columns, weights[:, k], strict=True)) for k in range(4)]
    best = hashes[0].copy()
    orientation = np.zeros(flat.size, dtype=np.int8)
    for k in range(1, 4):  # wraps around in int64, which is fine for a hash
        lower = hashes[k] < best
        best[lower] = hashes[k][lower]
        orientation[lower] = k
    positions = flat.astype(np.int32 if kv.size < 2**31 else np.int64)
    return positions, best, orientation


#: above this share of keypoints repeating by chance (``KeypointTable.chance_repeats``), a
#: repeated pattern is no proof of a copy: none repeat in images with noise, 12 to 94 % where
#: the noise fell below the value grid
CHANCE_REPEATS = 0.05


class KeypointTable:
    """The residual keypoints of a whole volume, gathered slice by slice, compactly.

    Only what the copy-move search needs is kept (flat position, hash, flip: 13 bytes a
    keypoint), never the slices themselves, so a volume can be measured a few slices at a time.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.counts: list[int] = []
        self._positions: list[np.ndarray] = [np.zeros(0, np.int32)]
        self._hashes: list[np.ndarray] = [np.zeros(0, np.int64)]
        self._flips: list[np.ndarray] = [np.zeros(0, np.int8)]

    @classmethod
    def of(cls, slices: Sequence[SliceKeypoints]) -> KeypointTable:
        table = cls(slices[0].width if slices else 1)
        for measured in slices:
            table.add(measured)
        return table

    def add(self, measured: SliceKeypoints) -> None:
        """Append the next slice's keypoints."""
        self.counts.append(len(measured.hashes))
        self._positions.append(measured.positions)
        self._hashes.append(measured.hashes)
        self._flips.append(measured.orientation)

    @staticmethod
    def _joined(parts: list[np.ndarray]) -> np.ndarray:
        """The parts as one array, which replaces them (never two copies for long)."""
        if len(parts) > 1:
            joined = np.concatenate(parts)
            parts[:] = [joined]
        return parts[0]

    def chance_repeats(self, copied: int) -> float:
        """Share of the keypoints, ``copied`` ones left out, whose pattern repeats somewhere.

        Acquired noise makes every keypoint's pattern unique (0.1 % at most in the CT, CR and MR
        at hand); where the noise is finer than the value grid (an 8-bit export, a smoothed or
        heavily lossy-compressed image), the residual is drawn by the anatomy and its
        quantisation, and repeats abound (12 to 94 %). Above ``CHANCE_REPEATS`` a repeat is no
        proof of a copy.
        """
        hashes = np.sort(self._joined(self._hashes))
        if hashes.size == 0:
            return 0.0
        shared = np.zeros(hashes.size, dtype=bool)
        shared[1:] = hashes[1:] == hashes[:-1]
        shared[:-1] |= shared[1:]
        return max(int(shared.sum()) - copied, 0) / max(hashes.size - copied, 1)

    def duplicated(self) -> list[np.ndarray]:
        """Per slice, the flat positions of keypoints whose texture recurs elsewhere.

        See ``duplicated_keypoints``; pairs are formed and voted on a block at a time, so the
        memory needed stays small even when most of the volume repeats (duplicated slices).
        """
        hashes = self._joined(self._hashes)
        positions = self._joined(self._positions)
        flips = self._joined(self._flips)
        ends = np.cumsum(np.asarray(self.counts, dtype=np.int64))
        hit = _duplicated(hashes, positions, flips, ends, self.width)
        return [
            positions[end - count : end][hit[end - count : end]]
            for end, count in zip(ends.tolist(), self.counts, strict=True)
        ]


#: keypoint pairs are formed and voted on this many sorted keypoints at a time
_PAIR_BLOCK = 1 << 18


def _duplicated(
    hashes: np.ndarray, positions: np.ndarray, flips: np.ndarray, ends: np.ndarray, width: int
) -> np.ndarray:
    """Which keypoints (all slices, in order) belong to a believed copy: ``(n,)`` bool."""
    hit = np.zeros(hashes.size, dtype=bool)
    ordered = np.sort(hashes)
    if not (ordered[1:] == ordered[:-1]).any():  # the usual case for an authentic scan
        return hit
    del ordered
    # keypoints sharing a hash, by hash and then volume order (a stable sort): the pairs are
    # the ones at most _MAX_RUN - 1 apart within a run of one hash
    order = np.argsort(hashes, kind="stable")
    sorted_hashes = hashes[order]
    shared = np.zeros(hashes.size, dtype=bool)
    shared[1:] = sorted_hashes[1:] == sorted_hashes[:-1]
    shared[:-1] |= shared[1:].copy()
    ranked = order[shared]
    del order
    ranked_hashes = sorted_hashes[shared]
    del sorted_hashes, shared
    n_slices = len(ends)
    rows = int(positions.max()) // width + 1
    shape = (2 * n_slices + 1, 3 * rows + 1, 3 * width + 1)

    def pairs(start: int, stop: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Pairs starting at ranks ``start:stop``, with one int64 code per transform."""
        for lag in range(1, _MAX_RUN):
            end = min(stop, ranked.size - lag)
            if end <= start:
                break
            same = ranked_hashes[start + lag : end + lag] == ranked_hashes[start:end]
            i, j = ranked[start:end][same], ranked[start + lag : end + lag][same]
            yield i, j, _transform_code(i, j, positions, flips, ends, width, shape)

    codes, votes = np.zeros(0, np.int64), np.zeros(0, np.int64)
    for start in range(0, ranked.size, _PAIR_BLOCK):
        for _, _, code in pairs(start, start + _PAIR_BLOCK):
            codes, votes = _add_votes(codes, votes, code)
    believed_codes = codes[votes >= MIN_MATCHES]
    if believed_codes.size == 0:
        return hit
    for start in range(0, ranked.size, _PAIR_BLOCK):
        for i, j, code in pairs(start, start + _PAIR_BLOCK):
            believed = np.isin(code, believed_codes)
            hit[i[believed]] = True
            hit[j[believed]] = True
    return hit


def _transform_code(
    i: np.ndarray,
    j: np.ndarray,
    positions: np.ndarray,
    flips: np.ndarray,
    ends: np.ndarray,
    width: int,
    shape: tuple[int, int, int],
) -> np.ndarray:
    """One int64 per pair for the transform taking keypoint ``i`` to ``j``.

    The transform is the flip between them and the slice offset and displacement; for a flip
    the sum of the coordinates along the flipped axis is what stays constant. Every part is
    offset to be non-negative and packed into one integer, one code per distinct transform.
    """
    flip = (flips[i] ^ flips[j]).astype(np.int64)
    dz = np.searchsorted(ends, j, side="right") - np.searchsorted(ends, i, side="right")
    yi, xi = np.divmod(positions[i].astype(np.int64), width)
    yj, xj = np.divmod(positions[j].astype(np.int64), width)
    dy = np.where(flip & 2, yj + yi, yj - yi)
    dx = np.where(flip & 1, xj + xi, xj - xi)
    n_z, n_y, n_x = shape
    return ((flip * n_z + dz + n_z // 2) * n_y + dy + n_y // 3) * n_x + dx + n_x // 3


def _add_votes(
    codes: np.ndarray, votes: np.ndarray, new: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Merge the codes of new pairs into the sorted tally of ``codes`` and their ``votes``."""
    if new.size == 0:
        return codes, votes
    values, counts = np.unique(new, return_counts=True)
    merged, inverse = np.unique(np.concatenate([codes, values]), return_inverse=True)
    tally = np.bincount(inverse.ravel(), np.concatenate([votes, counts]), minlength=merged.size)
    return merged, tally.astype(np.int64)


def duplicated_keypoints(slices: Sequence[SliceKeypoints]) -> list[np.ndarray]:
    """Per slice, the ``(rows, cols)`` of keypoints whose texture is repeated elsewhere.

    Pairs of keypoints with identical hashes vote for a transform (slice offset, flip and
    displacement; for a flip the sum of the coordinates along the flipped axis is what stays
    constant); a transform with at least ``MIN_MATCHES`` votes is a copy, and both ends of its
    pairs are returned.
    """
    table = KeypointTable.of(slices)
    return [rows_cols(found, table.width) for found in table.duplicated()]
