"""Handcrafted forensic features of image tiles, for the classical baseline detector.

Every slice is cut into ``tile``×``tile`` tiles every ``stride`` pixels (tiles overlap when the
stride is smaller than the tile); only tiles lying inside the body (``masks.foreground_mask``)
are used. Each tile is described by:

* **noise level** of three SRM-style high-pass residuals (first differences, second differences,
  the 3×3 "KV" kernel of Fridrich & Kodovský): a robust log-amplitude, the mean of
  ``log(|r| + q)``, which an edge or a vessel moves far less than a standard deviation;
* **shape** of the KV residual's distribution: log kurtosis;
* **quantisation**: the share of exact zeros in the first-difference and KV residuals (smooth,
  in-painted or re-quantised content has many more);
* **local spectrum**: a Welch estimate from Hann-windowed ``stride``-pixel blocks, giving the share
  of power above a quarter of the sampling rate and the slope of log power against log frequency;
* **duplicated texture** (copy-move): keypoints of the KV residual (its local maxima) whose
  quantised 3×3 neighbourhood, hashed independently of flips, recurs elsewhere in the volume at
  a transform (slice offset, flip, displacement) that at least ``MIN_MATCHES`` pairs agree on.
  Authentic noise never repeats; a region cloned within the scan repeats it exactly, flipped,
  turned or shifted in mean (the search itself is in ``copy_move``);
* **context**: the tile's mean intensity (HU/1000 for CT) and log standard deviation.

Absolute noise levels differ between scanners, kernels and doses, so the level, zero and spectral
features are mostly used *relative* to what surrounds the tile: minus the median of the 16 tiles
two strides away in the slice (the ring of the 5×5 neighbourhood, which shares no pixel with the
tile), and minus the median of the 3×3 tiles at the same place in the slices above and below,
each divided by the volume's own robust spread of that difference. A model trained on one
scanner therefore sees deviations in "units of this scan's normal variation".
Pixels at a clamp value (padding outside the reconstruction circle, the scanner's floor) are left
out of every tile statistic.

Everything is vectorised per slice: block sums on the ``stride`` grid, combined into tiles. About
25 ms of one CPU core per 512×512 slice, 40 slices/s (``benchmarks/dev_classical.py speed``).
A volume is streamed a few slices at a time (``CHUNK_SLICES``): only per-tile measurements and
compact keypoint hashes are kept, never per-pixel copies of the volume, and the result does not
depend on the chunk size.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.fft

from medforensics.detect.copy_move import (
    CHANCE_REPEATS,
    MIN_MATCHES,
    KeypointTable,
    duplicated_keypoints,
    keypoint_hashes,
    no_keypoints,
    rows_cols,
)
from medforensics.detect.masks import foreground_mask

# MIN_MATCHES, KeypointTable and duplicated_keypoints live in copy_move; re-exported here
__all__ = [
    "BASE_NAMES",
    "CHUNK_SLICES",
    "FEATURES_VERSION",
    "MIN_MATCHES",
    "KeypointTable",
    "SliceMeasurements",
    "TileFeatures",
    "TileGrid",
    "duplicated_keypoints",
    "feature_names",
    "measure_volume",
    "slice_keypoints",
    "slice_measurements",
    "tile_overlap",
    "volume_features",
]

#: bumped whenever a feature is computed differently, so stale model files are refused
FEATURES_VERSION = 2
#: the per-tile measurements every relative feature is derived from
BASE_NAMES = (
    "level_d1",
    "level_d2",
    "level_kv",
    "zeros_d1",
    "zeros_kv",
    "log_kurtosis_kv",
    "hf_share",
    "spectral_slope",
)
#: base measurements also given to the model as they are (scale-free, or context)
_ABSOLUTE = ("zeros_d1", "zeros_kv", "log_kurtosis_kv", "hf_share", "spectral_slope")
_CONTEXT_NAMES = ("mean_intensity", "log_std_intensity", "has_adjacent_slices")

#: relative features are divided by the volume's robust spread, floored at this
_MIN_SPREAD = 1e-3
#: images at least this many pixels on their short side get their body mask at half resolution
_HALF_RES_FROM = 256
#: fewer valid neighbours than this and a relative feature is 0 ("as expected")
_MIN_NEIGHBOURS = 4


def feature_names() -> tuple[str, ...]:
    """Names of the feature columns, in order."""
    plane = tuple(f"{name}_vs_plane" for name in BASE_NAMES)
    across = tuple(f"{name}_vs_slices" for name in BASE_NAMES)
    magnitudes = tuple(f"abs_{name}" for name in plane[:3] + across[:3])
    return plane + across + magnitudes + _ABSOLUTE + ("duplicated_keypoints",) + _CONTEXT_NAMES


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of a slice are: tile ``(i, j)`` covers rows ``i*stride : i*stride+tile``."""

    tile: int = 32
    stride: int = 16
    min_coverage: float = 0.75

    def __post_init__(self) -> None:
        if self.stride < 4 or self.tile % self.stride:
            raise ValueError(
                f"tile ({self.tile}) must be a multiple of stride ({self.stride}), stride >= 4"
            )

    @property
    def blocks_per_tile(self) -> int:
        return self.tile // self.stride

    def shape(self, rows: int, cols: int) -> tuple[int, int]:
        """Tiles along rows and cols of a ``rows``×``cols`` image (0 when smaller than a tile)."""
        m = self.blocks_per_tile
        return max(rows // self.stride - m + 1, 0), max(cols // self.stride - m + 1, 0)

    def centre(self, index: int) -> int:
        """Pixel coordinate of the centre of tile ``index`` along one axis."""
        return index * self.stride + self.tile // 2


@dataclass
class TileFeatures:
    """Features of every tile of a volume.

    Attributes:
        values: ``(slices, tile_rows, tile_cols, n_features)`` float32; 0 where invalid.
        valid: ``(slices, tile_rows, tile_cols)`` bool, tile inside the body.
        grid: the tiling.
        names: feature names (``feature_names()``).
    """

    values: np.ndarray
    valid: np.ndarray
    grid: TileGrid
    names: tuple[str, ...]

    @property
    def n_valid(self) -> int:
        return int(self.valid.sum())

    def matrix(self) -> np.ndarray:
        """The valid tiles' features as ``(n_valid, n_features)``."""
        return self.values[self.valid]


# --- per slice --------------------------------------------------------------------------------


def _block_sum(values: np.ndarray, block: int) -> np.ndarray:
    """Sum of every ``block``×``block`` block (a ragged edge is dropped)."""
    rows, cols = values.shape[0] // block, values.shape[1] // block
    trimmed = values[: rows * block, : cols * block]
    starts_r, starts_c = np.arange(0, rows * block, block), np.arange(0, cols * block, block)
    return np.add.reduceat(np.add.reduceat(trimmed, starts_c, axis=1), starts_r, axis=0)


def _tile_sum(blocks: np.ndarray, m: int) -> np.ndarray:
    """Sum of every ``m``×``m`` window of the block grid (valid windows only)."""
    if m == 1:
        return blocks
    integral = np.zeros((blocks.shape[0] + 1, blocks.shape[1] + 1), dtype=np.float64)
    integral[1:, 1:] = blocks.cumsum(0).cumsum(1)
    return integral[m:, m:] - integral[:-m, m:] - integral[m:, :-m] + integral[:-m, :-m]


def _quantum(image: np.ndarray) -> float:
    """Half the value step of the data: 0.5 for integer data, else a small fraction of the noise."""
    sample = image[::7, ::7]
    if np.array_equal(sample, np.rint(sample)):
        return 0.5
    spread = float(np.median(np.abs(np.diff(sample, axis=1)))) if sample.shape[1] > 1 else 0.0
    return max(0.02 * spread, 1e-6)


def _radial_bins(block: int) -> tuple[np.ndarray, np.ndarray]:
    """Matrix summing a block's rfft2 power into radial frequency bins, and the bin centres."""
    fy = np.fft.fftfreq(block)[:, None]
    fx = np.fft.rfftfreq(block)[None, :]
    radius = np.sqrt(fy**2 + fx**2).ravel()
    edges = np.linspace(1.0 / block, 0.5, 7)
    index = np.digitize(radius, edges) - 1
    n_bins = len(edges) - 1
    matrix = np.zeros((radius.size, n_bins), dtype=np.float32)
    inside = (index >= 0) & (index < n_bins)
    matrix[np.flatnonzero(inside), index[inside]] = 1.0
    # one-sided rfft: columns other than 0 and Nyquist stand for two frequencies
    weight = np.where((np.arange(fx.size) == 0) | (np.arange(fx.size) == block // 2), 1.0, 2.0)
    matrix *= np.broadcast_to(weight[None, :], (block, fx.size)).ravel()[:, None]
    return matrix, (edges[:-1] + edges[1:]) / 2


def _spectral(image: np.ndarray, grid: TileGrid) -> tuple[np.ndarray, np.ndarray]:
    """Share of power above 0.25 cycles/px and log-log spectral slope, per tile."""
    b = grid.stride
    rows, cols = image.shape[0] // b, image.shape[1] // b
    blocks = image[: rows * b, : cols * b].reshape(rows, b, cols, b).transpose(0, 2, 1, 3)
    blocks = blocks - blocks.mean(axis=(2, 3), keepdims=True)
    window = np.hanning(b + 2)[1:-1].astype(np.float32)
    spectrum = scipy.fft.rfft2(blocks * np.outer(window, window), workers=1)
    power = spectrum.real**2 + spectrum.imag**2
    matrix, centres = _radial_bins(b)
    radial = power.reshape(rows, cols, -1).astype(np.float32) @ matrix
    m = grid.blocks_per_tile
    tiles = np.stack([_tile_sum(radial[..., k], m) for k in range(radial.shape[-1])], axis=-1)
    tiles = np.maximum(tiles, 1e-12)
    high = centres > 0.25
    hf_share = tiles[..., high].sum(-1) / tiles.sum(-1)
    x = np.log(centres) - np.log(centres).mean()
    slope = (np.log(tiles) @ x) / float(x @ x)
    return hf_share, slope


@dataclass
class SliceMeasurements:
    """What one slice contributes: per-tile measurements and its texture keypoints.

    Kept compact (13 bytes a keypoint), since a volume's keypoints are all held until the
    copy-move search has seen every slice.

    Attributes:
        tiles: ``(tile_rows, tile_cols, len(BASE_NAMES) + 3)`` float64: the base measurements,
            mean intensity, log standard deviation of intensity and body coverage; NaN where a
            tile is outside the body.
        positions: where the residual keypoints are, as flat indices ``row * width + col``,
            ``(k,)`` int32 (int64 for images of 2**31 pixels or more).
        hashes: orientation-free hash of the quantised residual around each keypoint, ``(k,)``.
        orientation: which flip (0 none, 1 left-right, 2 up-down, 3 both) gave the hash.
        width: columns of the slice, to turn ``positions`` back into rows and columns.
    """

    tiles: np.ndarray
    positions: np.ndarray
    hashes: np.ndarray
    orientation: np.ndarray
    width: int = 1

    @property
    def keypoints(self) -> np.ndarray:
        """``(rows, cols)`` of the keypoints, ``(k, 2)`` int64."""
        return rows_cols(self.positions, self.width)


def _usable(image: np.ndarray) -> np.ndarray | None:
    """Pixels not at a clamp value (padding outside the field of view, the scanner floor...).

    A value counts as a clamp when it is the slice's minimum or maximum and more than 0.5 % of the
    pixels hold it. The mask is shrunk by one pixel so no residual reaches into clamped pixels.
    None when nothing is clamped (the common case, and the fast path).
    """
    clamped = np.zeros(image.shape, dtype=bool)
    for value in (float(image.min()), float(image.max())):
        hits = image == value
        if hits.mean() > 0.005:
            clamped |= hits
    if not clamped.any():
        return None
    grown = clamped.copy()
    grown[1:] |= clamped[:-1]
    grown[:-1] |= clamped[1:]
    grown[:, 1:] |= clamped[:, :-1]
    grown[:, :-1] |= clamped[:, 1:]
    return ~grown


def slice_measurements(image: np.ndarray, modality: str, grid: TileGrid) -> SliceMeasurements:
    """Per-tile base measurements and residual keypoints of one 2D slice."""
    image = np.asarray(image, dtype=np.float32)
    b, m = grid.stride, grid.blocks_per_tile
    n_rows, n_cols = grid.shape(*image.shape)
    if n_rows == 0 or n_cols == 0 or min(image.shape) < 8:
        return SliceMeasurements(
            np.full((n_rows, n_cols, len(BASE_NAMES) + 3), np.nan), *no_keypoints(), image.shape[1]
        )
    # body mask at half resolution for large images: four times cheaper, and tiles only need
    # its coverage (small images keep full resolution, where the mask's opening would cut
    # through thin walls)
    factor, mask = _body_mask(image, modality)
    coverage = _tile_sum(_block_sum(mask, b // factor), m) / float((grid.tile // factor) ** 2)
    usable = _usable(image)
    weight = None if usable is None else usable.astype(np.float32)
    pixels_per_tile = (
        np.full(coverage.shape, float(grid.tile**2))
        if weight is None
        else np.maximum(_tile_sum(_block_sum(weight, b).astype(np.float64), m), 1.0)
    )

    def tile_mean(values: np.ndarray) -> np.ndarray:
        if weight is not None:
            values = values * weight
        return _tile_sum(_block_sum(values, b).astype(np.float64), m) / pixels_per_tile

    q = _quantum(image)
    padded = np.pad(image, 2, mode="reflect")
    d1h = padded[2:-2, 3:-1] - image
    d1v = padded[3:-1, 2:-2] - image
    d2h_full = padded[:, 1:-3] - 2 * padded[:, 2:-2] + padded[:, 3:-1]
    d2h = d2h_full[2:-2]
    d2v = padded[1:-3, 2:-2] - 2 * image + padded[3:-1, 2:-2]
    kv = _kv(d2h_full)

    def level(*residuals: np.ndarray) -> np.ndarray:
        total = np.log(np.abs(residuals[0]) + q)
        for r in residuals[1:]:
            total += np.log(np.abs(r) + q)
        return tile_mean(total) / len(residuals)

    def zeros(*residuals: np.ndarray) -> np.ndarray:
        count = sum((r == 0).astype(np.float32) for r in residuals)
        return tile_mean(np.asarray(count)) / len(residuals)

    kv2 = kv * kv
    m2, m4 = tile_mean(kv2), tile_mean(kv2 * kv2)
    hf_share, slope = _spectral(image, grid)
    # centred first, so float32 squares of CT values keep their precision
    offset = float(np.median(image[::8, ::8]))
    centred = image - offset
    mean_centred = tile_mean(centred)
    var = np.maximum(tile_mean(centred * centred) - mean_centred**2, 0.0)
    mean = mean_centred + offset
    if modality == "CT":
        intensity = np.clip(mean, -1100.0, 2000.0) / 1000.0
    else:
        low, high = np.percentile(image[::4, ::4], [1, 99])
        intensity = (mean - low) / max(float(high - low), 1e-6)
    tiles = np.stack(
        [
            level(d1h, d1v),
            level(d2h, d2v),
            level(kv),
            zeros(d1h, d1v),
            zeros(kv),
            np.log(np.maximum(m4, 1e-12) / np.maximum(m2, 1e-12) ** 2 + 1e-6),
            hf_share,
            slope,
            intensity,
            0.5 * np.log(var + q**2),
            coverage,
        ],
        axis=-1,
    )
    flat = var < (q**2) * 1e-2  # a constant tile (padding, burned-in block) says nothing
    usable_share = pixels_per_tile / float(grid.tile**2)
    tiles[(coverage < grid.min_coverage) | (usable_share < 0.5) | flat] = np.nan
    body = _full_resolution(mask, factor, image.shape, usable)
    return SliceMeasurements(tiles, *keypoint_hashes(kv, body, q), image.shape[1])


def _body_mask(image: np.ndarray, modality: str) -> tuple[int, np.ndarray]:
    """The foreground mask, at half resolution for large images (``factor`` 2), as float32."""
    factor = 2 if min(image.shape) >= _HALF_RES_FROM else 1
    small = image[
        : image.shape[0] // factor * factor : factor, : image.shape[1] // factor * factor : factor
    ]
    return factor, foreground_mask(small, modality).astype(np.float32)


def _full_resolution(
    mask: np.ndarray, factor: int, shape: tuple[int, ...], usable: np.ndarray | None
) -> np.ndarray:
    body = np.repeat(np.repeat(mask > 0, factor, axis=0), factor, axis=1)
    body = np.pad(body, ((0, shape[0] - body.shape[0]), (0, shape[1] - body.shape[1])))
    if usable is not None:
        body &= usable
    return body


def _kv(d2h_full: np.ndarray) -> np.ndarray:
    """The 3×3 KV residual from the row second differences of the 2-pixel reflect-padded image."""
    return -(d2h_full[1:-3] - 2 * d2h_full[2:-2] + d2h_full[3:-1]) / 4.0


def slice_keypoints(image: np.ndarray, modality: str) -> SliceMeasurements:
    """Only the texture keypoints of a slice (no tile features): what copy-move search needs.

    The same keypoints as ``slice_measurements`` gives, several times cheaper; ``tiles`` is an
    empty array.
    """
    image = np.asarray(image, dtype=np.float32)
    empty = np.zeros((0, 0, len(BASE_NAMES) + 3))
    if min(image.shape) < 8:
        return SliceMeasurements(empty, *no_keypoints(), image.shape[1])
    factor, mask = _body_mask(image, modality)
    padded = np.pad(image, 2, mode="reflect")
    d2h_full = padded[:, 1:-3] - 2 * padded[:, 2:-2] + padded[:, 3:-1]
    body = _full_resolution(mask, factor, image.shape, _usable(image))
    return SliceMeasurements(
        empty, *keypoint_hashes(_kv(d2h_full), body, _quantum(image)), image.shape[1]
    )


def _keypoint_counts(points: np.ndarray, grid: TileGrid, shape: tuple[int, int]) -> np.ndarray:
    """How many of ``points`` (``(k, 2)`` rows and columns) fall in each tile of the grid."""
    b = grid.stride
    blocks = np.zeros((shape[0] // b, shape[1] // b))
    if len(points):
        by, bx = points[:, 0] // b, points[:, 1] // b
        keep = (by < blocks.shape[0]) & (bx < blocks.shape[1])
        np.add.at(blocks, (by[keep], bx[keep]), 1.0)
    return _tile_sum(blocks, grid.blocks_per_tile)


# --- across the volume ------------------------------------------------------------------------


def _neighbour_stack(
    values: np.ndarray, offsets: list[tuple[int, int, int]], start: int, stop: int
) -> np.ndarray:
    """Slices ``start:stop`` of ``values`` (S, R, C, F) shifted by each offset, NaN-padded.

    Shape ``(stop - start, R, C, F, len(offsets))``: only the slices asked for, so a volume is
    done a few slices at a time. The neighbour axis is last and contiguous, which makes the
    median's sort several times faster.
    """
    pad = max(max(abs(o) for o in offset) for offset in offsets)
    s, r, c = values.shape[:3]
    n = stop - start
    low, high = max(start - pad, 0), min(stop + pad, s)
    padded = np.full((n + 2 * pad, r + 2 * pad, c + 2 * pad, values.shape[3]), np.nan, np.float32)
    padded[low - start + pad : high - start + pad, pad : pad + r, pad : pad + c] = values[low:high]
    stack = np.empty((n, r, c, values.shape[3], len(offsets)), dtype=np.float32)
    for k, (dz, dy, dx) in enumerate(offsets):
        stack[..., k] = padded[
            pad + dz : pad + dz + n, pad + dy : pad + dy + r, pad + dx : pad + dx + c
        ]
    return stack


def _nan_median(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median over the last axis ignoring NaN (sorted; NaN go last), and the count of values."""
    counts = np.sum(~np.isnan(stack), axis=-1)
    ordered = np.sort(stack, axis=-1)
    lower = np.take_along_axis(ordered, np.maximum((counts - 1) // 2, 0)[..., None], axis=-1)
    upper = np.take_along_axis(ordered, np.maximum(counts // 2, 0)[..., None], axis=-1)
    return (lower[..., 0] + upper[..., 0]) / 2, counts


def _deviation(
    values: np.ndarray, offsets: list[tuple[int, int, int]], chunk_slices: int
) -> np.ndarray:
    """Each tile minus the median of its neighbours at ``offsets`` (NaN with too few), float64.

    Done ``chunk_slices`` slices at a time (each needs its neighbour slices only as they are).
    """
    deviation = np.empty(values.shape, dtype=np.float64)
    for start in range(0, values.shape[0], chunk_slices):
        stop = min(start + chunk_slices, values.shape[0])
        expected, counts = _nan_median(_neighbour_stack(values, offsets, start, stop))
        part = values[start:stop] - expected
        part[counts < _MIN_NEIGHBOURS] = np.nan
        deviation[start:stop] = part
    return deviation


@dataclass(frozen=True)
class _RobustScale:
    """Per feature column: the volume's median deviation and robust spread (None: too few)."""

    centre: tuple[float, ...]
    spread: tuple[float | None, ...]

    @staticmethod
    def of(deviation: np.ndarray, slices: np.ndarray | None = None) -> _RobustScale:
        """Measured over the tiles of ``slices`` (a boolean per slice; default all)."""
        centres: list[float] = []
        spreads: list[float | None] = []
        for k in range(deviation.shape[-1]):
            column = deviation[..., k]
            measured = column if slices is None else column[slices]
            finite = measured[np.isfinite(measured)]
            if finite.size < 8:
                centres.append(0.0)
                spreads.append(None)
                continue
            centre = float(np.median(finite))
            centres.append(centre)
            spreads.append(max(1.4826 * float(np.median(np.abs(finite - centre))), _MIN_SPREAD))
        return _RobustScale(tuple(centres), tuple(spreads))

    def apply(self, deviation: np.ndarray) -> np.ndarray:
        """Deviations in robust-spread units, 0 where unknown, clipped to +-20."""
        out = np.zeros(deviation.shape, dtype=np.float64)
        for k, (centre, spread) in enumerate(zip(self.centre, self.spread, strict=True)):
            if spread is not None:
                out[..., k] = np.nan_to_num((deviation[..., k] - centre) / spread, nan=0.0)
        return np.clip(out, -20.0, 20.0, out=out)


#: in-plane neighbours: the ring of tiles two strides away, the nearest that share no pixel with
#: the tile itself (a manipulation also covers half of each adjacent, overlapping tile)
_PLANE = [(0, dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if max(abs(dy), abs(dx)) == 2]
_ACROSS = [(dz, dy, dx) for dz in (-1, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
#: slices in flight at once; any value gives the same features, this bounds the memory
CHUNK_SLICES = 8


def measure_volume(
    pixels: np.ndarray,
    modality: str,
    grid: TileGrid,
    workers: int = 1,
    chunk_slices: int = CHUNK_SLICES,
) -> tuple[np.ndarray, KeypointTable]:
    """Per-slice measurements of a volume, ``chunk_slices`` slices at a time.

    Returns the stacked ``SliceMeasurements.tiles`` (``(slices, tile_rows, tile_cols, k)``) and
    the volume's keypoints. Only these small per-tile and per-keypoint records are kept: each
    slice is read as it is measured (``pixels`` may be a memory map), its pixel-sized
    temporaries freed before the next chunk.
    """
    n_slices, rows, cols = pixels.shape
    tiles = np.empty((n_slices, *grid.shape(rows, cols), len(BASE_NAMES) + 3), dtype=np.float64)
    keypoints = KeypointTable(cols)

    def measure(z: int) -> SliceMeasurements:
        return slice_measurements(pixels[z], modality, grid)

    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 and n_slices > 1 else None
    try:
        for start in range(0, n_slices, chunk_slices):
            chunk = range(start, min(start + chunk_slices, n_slices))
            for z, measured in zip(chunk, (pool.map if pool else map)(measure, chunk), strict=True):
                tiles[z] = measured.tiles
                keypoints.add(measured)
    finally:
        if pool is not None:
            pool.shutdown()
    return tiles, keypoints


def volume_features(
    pixels: np.ndarray,
    modality: str,
    grid: TileGrid | None = None,
    slice_context: bool = True,
    workers: int = 1,
    chunk_slices: int = CHUNK_SLICES,
) -> TileFeatures:
    """Tile features of a ``(slices, rows, cols)`` volume.

    Streams over the slices: ``chunk_slices`` at a time are measured, keeping per-tile
    measurements and compact keypoint hashes only; the relative features are then formed from
    those, again a chunk of slices (plus one slice of context on each side) at a time. Memory
    beyond ``pixels`` is a few hundred bytes a tile, keypoints included (about 150 MB for 300
    slices of 512x512), whatever ``chunk_slices`` is.

    Args:
        pixels: HU for CT, stored values otherwise.
        modality: DICOM modality code (chooses the body mask and intensity scaling).
        grid: the tiling (default 32-pixel tiles every 16 pixels).
        slice_context: compare tiles with the slices above and below (all but the first and
            last slice); False treats every slice as a separate 2D image (what a single slice
            gets anyway).
        workers: threads for the per-slice work (numpy releases the GIL in the heavy parts).
        chunk_slices: slices processed at once; it bounds the memory, not the result.
    """
    grid = grid or TileGrid()
    if pixels.ndim != 3:
        raise ValueError(f"pixels must be (slices, rows, cols), got shape {pixels.shape}")
    if chunk_slices < 1:
        raise ValueError(f"chunk_slices must be at least 1, got {chunk_slices}")
    n_slices = pixels.shape[0]
    raw, keypoints = measure_volume(pixels, modality, grid, workers, chunk_slices)
    duplicated = keypoints.duplicated()
    if keypoints.chance_repeats(sum(len(found) for found in duplicated)) > CHANCE_REPEATS:
        # noise below the value grid (heavy lossy compression, an 8-bit export): patterns
        # repeat by chance all over the image, so a repeat is no evidence of a copy
        duplicated = [found[:0] for found in duplicated]
    copied = np.stack(
        [
            _keypoint_counts(rows_cols(found, keypoints.width), grid, pixels.shape[1:])
            for found in duplicated
        ]
    )
    del keypoints, duplicated
    n_base = len(BASE_NAMES)
    base = raw[..., :n_base]
    valid = np.isfinite(raw).all(axis=-1)
    # the first and last slices have a neighbour on one side only, and at the ends of a
    # scan helical reconstruction makes the noise differ anyway: no slice context there
    inner = np.zeros(n_slices, dtype=bool)
    if slice_context and n_slices >= 3:
        inner[1:-1] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        plane = _deviation(base, _PLANE, chunk_slices)
        plane_scale = _RobustScale.of(plane)
        across = _deviation(base, _ACROSS, chunk_slices) if inner.any() else None
        across_scale = _RobustScale.of(across, inner) if across is not None else None
    absolute = [BASE_NAMES.index(name) for name in _ABSOLUTE]
    values = np.empty((*valid.shape, len(feature_names())), dtype=np.float32)
    for start in range(0, n_slices, chunk_slices):
        part = slice(start, min(start + chunk_slices, n_slices))
        plane_part = plane_scale.apply(plane[part])
        across_part = np.zeros_like(plane_part)
        if across is not None and across_scale is not None:
            across_part = across_scale.apply(across[part])
            across_part[~inner[part]] = 0.0
        has_adjacent = np.broadcast_to(inner[part, None, None, None], (*valid[part].shape, 1))
        rows = np.concatenate(
            [
                plane_part,
                across_part,
                np.abs(plane_part[..., :3]),
                np.abs(across_part[..., :3]),
                base[part][..., absolute],
                np.log1p(copied[part])[..., None],
                raw[part][..., n_base : n_base + 2],
                has_adjacent.astype(raw.dtype),
            ],
            axis=-1,
        )
        values[part] = np.where(valid[part][..., None], np.nan_to_num(rows), 0.0)
    return TileFeatures(values=values, valid=valid, grid=grid, names=feature_names())


def tile_overlap(mask: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Fraction of each tile covered by a boolean ``(slices, rows, cols)`` mask."""
    m = grid.blocks_per_tile
    return np.stack(
        [
            _tile_sum(_block_sum(plane.astype(np.float32), grid.stride), m) / float(grid.tile**2)
            for plane in mask
        ]
    )
