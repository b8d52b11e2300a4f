"""Noise-residual consistency: a transparent statistical detector that needs no training data.

An authentic image's noise level changes smoothly: across a CT slice it follows the patient's
attenuation, and between neighbouring slices it hardly changes. In-painting, pasting a region
from another scan or a smooth generated patch leaves blocks whose local noise level disagrees with
their neighbours. This detector measures that disagreement:

1. high-pass residual (pixel minus the mean of its four neighbours), inside the body mask;
2. robust noise level (median absolute residual) of every ``block``×``block`` tile, in log units;
3. each tile's deviation from the median of its neighbours in-plane and in the adjacent slices,
   divided by the volume's own robust spread of those deviations (self-normalising, so scanners,
   kernels and modalities with different noise need no retuning), but never by less than the
   value grid lets a tile's level be measured (``grid_resolution``: in an 8-bit export whose
   noise is below one grey level, most tiles share one or two levels; without that floor one
   level up read as 20 spreads, and 8-bit exports of authentic radiographs scored 0.57 to 0.84,
   ``manipulated``; 16-bit and 12-bit images are not affected);
4. a cluster statistic (sum of deviations over 2×2 and 3×3 tiles / √count) and its maximum over the
   volume, divided by √(2 ln N), the expected maximum of N independent standard normals; in
   a single projection image, tiles are compared only with tiles of like brightness, and also
   with the ring of tiles 3 to 6 away, and the larger statistic counts (``RING_INNER``);
5. Platt calibration of that statistic into a probability, and an operating point, both read
   from a calibration file shipped with the package (``models/noise-residual.json``).

Limits: a manipulation that re-creates matching noise (as our attack simulator's lesion
injection does), or one smaller than about two tiles, is invisible to this statistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage

from medforensics.detect import masks
from medforensics.detect.base import Detector
from medforensics.detect.calibration import CalibrationRecord, PlattCalibration
from medforensics.detect.registry import register_detector
from medforensics.detect.types import Detection, Finding, OperatingPoint
from medforensics.io.types import ImageVolume

#: median |N(0,1)| and the variance gain of the 4-neighbour residual for white noise
_MAD_TO_SIGMA = 1.0 / 0.6745
_RESIDUAL_GAIN = math.sqrt(1.25)
#: fewer valid tiles than this and the image cannot be assessed
_MIN_TILES = 24
#: floor of the robust spread of log-noise deviations (avoids dividing by ~0 on synthetic data)
_MIN_SPREAD = 0.02
#: a single radiograph is also compared with the ring of tiles this many to ``RING_OUTER``
#: tiles away (48-96 px at 16 px tiles): a patch spliced from a less (or more) noisy image is
#: several tiles wide, and against the 5x5 neighbourhood its inner tiles meet only each other
#: (the demo's 100 px patch scored 2.39, as much as authentic CT gives, ``authentic``; with
#: the ring 5.23). Measured for radiographs only (``benchmarks/dev_xr_splice.py``, and
#: docs/xray-mri.md): CT's route in ``auto`` does not use this detector, and MR's noise
#: follows the receive coils
RING_INNER = 3
RING_OUTER = 6
#: in a single radiograph, neighbours and ring tiles count only when their mean lies within this
#: share of the image's 1-99 percentile range of tile means of the tile's own (``_median_over``):
#: without it, pynetdicom's Elekta portal image of a steel ball scored 5.18 (0.571,
#: ``manipulated``), the noise behind the ball being higher; with it 1.28
BRIGHTNESS_TOLERANCE = 0.05

DEFAULT_CALIBRATION = "noise-residual.json"


@dataclass
class TileStatistics:
    """Per-tile quantities for one volume, shape ``(slices, tile_rows, tile_cols)``."""

    log_sigma: np.ndarray  # NaN where the tile is outside the body or flat
    cluster: np.ndarray  # cluster statistic, NaN where invalid
    tile: int
    n_valid: int

    @property
    def normalised_max(self) -> float:
        if self.n_valid < _MIN_TILES:
            return math.nan
        return float(np.nanmax(self.cluster)) / math.sqrt(2.0 * math.log(self.n_valid))


def residual(image: np.ndarray) -> np.ndarray:
    """Pixel minus the mean of its 4 neighbours (edges replicated), float32."""
    padded = np.pad(image.astype(np.float32, copy=False), 1, mode="edge")
    neighbours = (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]) / 4
    return image - neighbours


def _median(values: np.ndarray) -> np.ndarray:
    """``np.median(values, axis=-1)``, value for value, about three times faster; ``values`` (a
    scratch array) is reordered along its last axis.

    numpy partitions at both middle ranks; one partition at the upper one does, since the lower
    middle value is then the largest of the values before it.
    """
    n = values.shape[-1]
    if n < 2 or np.isnan(values).any():
        return np.asarray(np.median(values, axis=-1))
    half = n // 2
    values.partition(half, axis=-1)
    upper = values[..., half]
    if n % 2:
        return upper.copy()
    return np.asarray((values[..., :half].max(axis=-1) + upper) / 2)


def tile_log_sigma(image: np.ndarray, mask: np.ndarray, tile: int) -> np.ndarray:
    """log of the robust noise level of each tile; NaN for tiles outside ``mask`` or flat."""
    rows, cols = (image.shape[0] // tile) * tile, (image.shape[1] // tile) * tile
    grid = (rows // tile, tile, cols // tile, tile)
    res = np.abs(residual(image))[:rows, :cols].reshape(grid).transpose(0, 2, 1, 3)
    sigma = _median(res.reshape(grid[0], grid[2], tile * tile))
    sigma *= _MAD_TO_SIGMA / _RESIDUAL_GAIN
    coverage = mask[:rows, :cols].reshape(grid).mean(axis=(1, 3))
    valid = (coverage >= 0.9) & (sigma > 1e-6)
    out = np.full(sigma.shape, np.nan, dtype=np.float64)
    out[valid] = np.log(sigma[valid])
    return out


def tile_mean(image: np.ndarray, tile: int) -> np.ndarray:
    """Mean value of each ``tile``x``tile`` tile (the grid ``tile_log_sigma`` uses)."""
    rows, cols = (image.shape[0] // tile) * tile, (image.shape[1] // tile) * tile
    grid = (rows // tile, tile, cols // tile, tile)
    return np.asarray(image[:rows, :cols].reshape(grid).mean(axis=(1, 3)), dtype=np.float64)


def _neighbour_median(
    log_sigma: np.ndarray, level: np.ndarray | None = None, tolerance: float = math.inf
) -> np.ndarray:
    """Median of each tile's valid neighbours: 5×5 in-plane and 3×3 in the adjacent slices
    (of like brightness only, given the tiles' mean ``level``: see ``_median_over``)."""
    shifts = [
        (dz, dy, dx)
        for dz in ((-1, 0, 1) if log_sigma.shape[0] > 1 else (0,))
        for dy in range(-2 if dz == 0 else -1, 3 if dz == 0 else 2)
        for dx in range(-2 if dz == 0 else -1, 3 if dz == 0 else 2)
        if (dz, dy, dx) != (0, 0, 0)
    ]
    return _median_over(log_sigma, shifts, level, tolerance, min_count=4)


def _ring_median(log_sigma: np.ndarray, level: np.ndarray, tolerance: float) -> np.ndarray:
    """Median of each tile's valid in-plane tiles ``RING_INNER`` to ``RING_OUTER`` tiles away
    (Chebyshev distance) of like brightness: the noise around a region that its own tiles do
    not vote on."""
    r = RING_OUTER
    shifts = [
        (0, dy, dx)
        for dy in range(-r, r + 1)
        for dx in range(-r, r + 1)
        if max(abs(dy), abs(dx)) >= RING_INNER
    ]
    return _median_over(log_sigma, shifts, level, tolerance, min_count=len(shifts) // 4)


def _median_over(
    log_sigma: np.ndarray,
    shifts: list[tuple[int, int, int]],
    level: np.ndarray | None,
    tolerance: float,
    min_count: int,
) -> np.ndarray:
    """Median of ``log_sigma`` at each tile's ``(dz, dy, dx)`` offsets, over the valid ones
    whose mean ``level`` lies within ``tolerance`` of the tile's own (all, without ``level``).

    In a radiograph the noise follows the signal (fewer photons behind bone, a metal ball, the
    mediastinum), so only tiles of like brightness are a fair reference; a tile with fewer
    than ``min_count`` of them has none (NaN).
    """
    n_slices, rows, cols = log_sigma.shape
    pz = max(abs(dz) for dz, _, _ in shifts)
    p = max(max(abs(dy), abs(dx)) for _, dy, dx in shifts)

    def shifted(a: np.ndarray) -> list[np.ndarray]:
        padded = np.pad(a, ((pz, pz), (p, p), (p, p)), constant_values=np.nan)
        return [
            padded[pz + dz : pz + dz + n_slices, p + dy : p + dy + rows, p + dx : p + dx + cols]
            for dz, dy, dx in shifts
        ]

    stack = np.stack(shifted(log_sigma))
    if level is not None and math.isfinite(tolerance):
        unlike = np.stack([~(np.abs(other - level) <= tolerance) for other in shifted(level)])
        stack[unlike] = np.nan
    expected, counts = _nanmedian_first(stack)
    expected[counts < min_count] = np.nan
    return expected


def _nanmedian_first(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nanmedian(stack, axis=0)`` (NaN where all are NaN) and the count of valid values,
    by one sort (NaN sorts last), faster than ``nanmedian`` on these stacks (the values are
    the same: tests/detect/test_noise_residual.py)."""
    counts = np.sum(~np.isnan(stack), axis=0)
    ordered = np.sort(stack, axis=0)
    lower = np.take_along_axis(ordered, np.maximum(counts - 1, 0)[None] // 2, axis=0)[0]
    upper = np.take_along_axis(ordered, np.minimum(counts // 2, len(stack) - 1)[None], axis=0)[0]
    median = (lower + upper) / 2
    median[counts == 0] = np.nan
    return median, counts


def _standardised(deviation: np.ndarray, floor: float) -> np.ndarray:
    """``deviation`` in units of its own robust spread about its median (at least ``floor``)."""
    values = deviation[~np.isnan(deviation)]
    centre = float(np.median(values))
    spread = max(1.4826 * float(np.median(np.abs(values - centre))), _MIN_SPREAD, floor)
    return np.asarray((deviation - centre) / spread)


def _cluster(z: np.ndarray) -> np.ndarray:
    """max over 2×2 and 3×3 windows of |Σz| / √count, per tile (NaN where z is NaN)."""
    valid = ~np.isnan(z)
    filled = np.where(valid, z, 0.0)
    best = np.abs(filled)
    for size in (2, 3):
        sums = ndimage.uniform_filter(filled, size=(1, size, size), mode="constant") * size**2
        counts = (
            ndimage.uniform_filter(valid.astype(np.float64), size=(1, size, size), mode="constant")
            * size**2
        )
        with np.errstate(all="ignore"):
            stat = np.abs(sums) / np.sqrt(np.maximum(counts, 1.0))
        best = np.maximum(best, np.where(counts >= size * size * 0.75, stat, 0.0))
    return np.where(valid, best, np.nan)


def tile_statistics(
    volume: ImageVolume, tile: int, radiograph: bool | None = None
) -> TileStatistics:
    """Compute the per-tile noise statistics of a volume, one slice at a time.

    ``radiograph`` (default: for a single projection image, ``ImageVolume.is_projection``)
    compares each tile only with tiles of like brightness (``BRIGHTNESS_TOLERANCE``), and also
    with the ring of tiles ``RING_INNER`` to ``RING_OUTER`` away, keeping the larger cluster
    statistic of the two comparisons: see ``RING_INNER``.
    """
    log_sigma = np.stack(
        [
            tile_log_sigma(image, masks.foreground_mask(image, volume.modality), tile)
            for image in volume.pixels
        ]
    )
    if radiograph is None:
        radiograph = volume.is_projection and not volume.is_volume
    level, tolerance = None, math.inf
    if radiograph and log_sigma.size:  # an image smaller than a tile has no tiles
        level = np.stack([tile_mean(image, tile) for image in volume.pixels])
        tolerance = BRIGHTNESS_TOLERANCE * float(np.subtract(*np.percentile(level, [99, 1])))
    deviation = log_sigma - _neighbour_median(log_sigma, level, tolerance)
    if level is not None and int(np.sum(~np.isnan(deviation))) < _MIN_TILES:
        # a small image (a 128² crop) has too few tiles of like brightness side by side: it
        # is compared as before, with all its neighbours, rather than not at all
        level, tolerance = None, math.inf
        deviation = log_sigma - _neighbour_median(log_sigma)
    valid = ~np.isnan(deviation)
    n_valid = int(valid.sum())
    if n_valid < _MIN_TILES:
        return TileStatistics(log_sigma, np.full(log_sigma.shape, np.nan), tile, n_valid)
    floor = grid_resolution(log_sigma, value_step(volume.pixels))
    cluster = _cluster(_standardised(deviation, floor))
    if level is not None:
        around = log_sigma - _ring_median(log_sigma, level, tolerance)
        if np.any(~np.isnan(around)):
            cluster = np.fmax(cluster, _cluster(_standardised(around, floor)))
    return TileStatistics(log_sigma, cluster, tile, n_valid)


def value_step(pixels: np.ndarray, count: int = 65536) -> float:
    """Spacing of the value grid the pixels lie on, from about ``count`` of them: 1 for
    integers, the rescale slope for rescaled integers, about 0 for continuous data."""
    flat = np.asarray(pixels).ravel()
    levels = np.unique(flat[:: max(1, flat.size // count)])
    return float(np.diff(levels).min()) if levels.size > 1 else 0.0


def grid_resolution(log_sigma: np.ndarray, step: float) -> float:
    """The smallest change of a tile's log noise level that a value grid of ``step`` allows, at
    the volume's typical noise level.

    On a grid the residual moves in quarter steps and so does its median, the tile noise level:
    when the noise is no larger than the step (an 8-bit export of a radiograph), most tiles
    share a level or two, their deviations' robust spread collapses to nothing, and one step up
    would read as tens of spreads. A deviation smaller than the grid allows to measure is no
    evidence, so the spread is never taken below this.
    """
    if not step > 0 or not np.any(~np.isnan(log_sigma)):
        return 0.0
    typical = math.exp(float(np.nanmedian(log_sigma)))
    return math.log1p(step / 4 * _MAD_TO_SIGMA / _RESIDUAL_GAIN / typical)


def _default_record() -> CalibrationRecord:
    path = resources.files("medforensics.models").joinpath(DEFAULT_CALIBRATION)
    with resources.as_file(path) as real_path:
        return CalibrationRecord.load(real_path)


@register_detector
class NoiseResidualDetector(Detector):
    """Local noise-level consistency, in-plane and across slices (any modality)."""

    name = "noise-residual"
    modalities = ()

    def __init__(
        self,
        tile: int = 16,
        calibration: str | Path | CalibrationRecord | None = None,
        max_findings: int = 5,
    ) -> None:
        self.tile = tile
        self.max_findings = max_findings
        if isinstance(calibration, CalibrationRecord):
            self.record = calibration
        elif calibration is not None:
            self.record = CalibrationRecord.load(calibration)
        else:
            self.record = _default_record()

    @property
    def calibration(self) -> PlattCalibration:
        return self.record.calibration

    @property
    def operating_point(self) -> OperatingPoint:
        return self.record.operating_point

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "tile": self.tile, **self.record.card}

    def statistic(self, volume: ImageVolume) -> float:
        """The raw, uncalibrated volume statistic (NaN when the image cannot be assessed)."""
        return tile_statistics(volume, self.tile).normalised_max

    def detect(self, volume: ImageVolume) -> Detection:
        stats = tile_statistics(volume, self.tile)
        if stats.n_valid < _MIN_TILES:
            return Detection.not_assessed(
                self.name,
                f"only {stats.n_valid} tiles of {self.tile}x{self.tile} pixels lie inside the "
                f"imaged body (at least {_MIN_TILES} are needed): too small or blank to assess",
            )
        norm = math.sqrt(2.0 * math.log(stats.n_valid))
        score = self.calibration.probability(stats.normalised_max)
        tile_prob = np.where(
            np.isnan(stats.cluster), 0.0, self.calibration(np.nan_to_num(stats.cluster) / norm)
        ).astype(np.float32)
        return Detection(
            detector=self.name,
            score=score,
            verdict=self.operating_point.verdict(score),
            findings=self.findings(stats, tile_prob),
            anomaly_map=tile_prob,
            map_stride=self.tile,
            notes=[
                f"largest noise inconsistency {stats.normalised_max:.2f} "
                f"(1.0 is what chance gives over {stats.n_valid} tiles)"
            ],
        )

    def findings(self, stats: TileStatistics, tile_prob: np.ndarray) -> list[Finding]:
        """Local maxima of a tile probability map (this detector's, or another rule's over the
        same ``stats``: ``noise_mismatch``), with non-maximum suppression."""
        floor = 0.05
        order = np.argsort(tile_prob, axis=None)[::-1]
        taken: list[tuple[int, int, int]] = []
        findings: list[Finding] = []
        for flat in order:
            z, y, x = (int(v) for v in np.unravel_index(flat, tile_prob.shape))
            prob = float(tile_prob[z, y, x])
            if prob < floor or len(findings) >= self.max_findings:
                break
            if any(
                abs(z - tz) <= 1 and abs(y - ty) <= 2 and abs(x - tx) <= 2 for tz, ty, tx in taken
            ):
                continue
            taken.append((z, y, x))
            log_ratio = stats.log_sigma[z, y, x]
            findings.append(
                Finding(
                    kind="local",
                    score=prob,
                    slice=z,
                    row=y * stats.tile + stats.tile // 2,
                    col=x * stats.tile + stats.tile // 2,
                    radius=1.5 * stats.tile,
                    detail=(
                        "local noise level inconsistent with its surroundings "
                        f"(noise sigma {math.exp(log_ratio):.1f})"
                        if not math.isnan(log_ratio)
                        else "local noise level inconsistent with its surroundings"
                    ),
                )
            )
        return findings
