"""Where a re-gridded series lacks its interpolation trace: pixels that were put back afterwards.

CT-GAN's touch-up step, after zooming the whole scan back from 1 mm voxels, pastes a cube of 64
voxels around each injection that mixes the re-gridded scan with the **original** one
(``max(blend, original)`` for an injection, a smooth weight for a removal), so inside that cube
much of the tissue keeps the original pixels and their lack of an interpolation trace. More
generally, any region edited after a series was re-gridded, or pasted in from an original, shows
the same hole in a trace present everywhere else. This module maps the trace and finds the holes.

How. The series-wide trace has one frequency and phase per axis (the zoom applies the same grid to
every slice); both are refined from the whole series's profile. Each slice's |second difference|
along rows and along columns is then projected on that reference cosine and averaged over
``BOX``×``BOX`` windows, and over ``2·Z_HALF + 1`` slices: the local **coherence** (about the
modulation depth where the pixels were re-gridded, about 0 where they were not). How strong the
trace should be depends on the tissue (noise-dominated lung carries it differently from soft
tissue), so each cell's expected coherence is the series median per tissue class, mixed by the
cell's tissue fractions. Cells whose coherence falls short of the expectation by more than
``MIN_Z`` robust standard deviations, in connected groups, become ``local`` findings. Where the
expected coherence itself is within noise (a soft kernel's lung, say), nothing can be missing and
nothing is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medforensics.detect.resampling import AxisSums, Trace, axis_sums, detrend, measured
from medforensics.detect.types import Finding

#: map cells are this many pixels on a side
CELL = 8
#: the window each cell's coherence is measured over (pixels)
BOX = 32
#: slices on each side averaged into a cell
Z_HALF = 2
#: a cell's shortfall must exceed this many robust standard deviations
MIN_Z = 4.0
#: the expected coherence must exceed this many standard deviations for a hole to be visible
MIN_VISIBLE = 4.0
#: connected cells a hole needs (a 40×40-pixel area on one slice, or 8 cells on each of 3);
#: CT-GAN's touch-up cube is 64 pixels wide on every slice it spans. On the Siemens series
#: re-gridded with no edit the largest chance hole had 6 cells; the pasted-back boxes of
#: ``benchmarks/dev_resampling.py --locate`` had 200 or more
MIN_CELLS = 24
#: at most this many findings
MAX_FINDINGS = 3
#: a cell counts when at most this share of its window is outside the measured body (edges of
#: the body, where the window is half air, measure the trace badly)
MAX_OUTSIDE = 0.1
#: HU bounds of the tissue classes whose expected coherence is measured apart (CT)
CT_CLASSES = (-600.0, 300.0)


@dataclass(frozen=True)
class TraceMap:
    """The per-cell trace of a series, ``(slices, rows // CELL, cols // CELL)`` each."""

    coherence: np.ndarray  # measured (NaN outside the measured body)
    expected: np.ndarray  # from the cell's tissue mix
    sigma: float  # robust standard deviation of coherence - expected over the body

    @property
    def shortfall(self) -> np.ndarray:
        """Standard deviations by which each cell falls short of its expected trace."""
        return np.nan_to_num((self.expected - self.coherence) / max(self.sigma, 1e-6))


def _reference(total: np.ndarray, count: np.ndarray, frequency: float) -> tuple[float, float]:
    """Refined frequency and phase of the trace along one axis, from that axis's sums."""
    ok = count >= 16
    if not ok.any():
        return frequency, 0.0
    profile = np.where(ok, total / np.maximum(count, 1), float(np.median(total[ok] / count[ok])))
    relative = np.where(ok, detrend(profile), 0.0)
    x = np.arange(len(relative)) + 1.0  # sums[i] were taken at image position i + 1
    step = 1.0 / len(relative)
    candidates = frequency + np.linspace(-2 * step, 2 * step, 81)
    waves = np.exp(-2j * np.pi * candidates[:, None] * x[None, :])
    sums = waves @ relative
    best = int(np.argmax(np.abs(sums)))
    return float(candidates[best]), float(np.angle(sums[best]))


def _tissue(image: np.ndarray, modality: str) -> np.ndarray:
    """Class index per pixel: 0 not measured, then one class per HU band (one class off CT)."""
    keep = measured(image, modality)
    if modality != "CT":
        return keep.astype(np.int8)
    classes = 1 + np.digitize(image, CT_CLASSES).astype(np.int8)
    return np.where(keep, classes, 0).astype(np.int8)


def trace_map(pixels: np.ndarray, modality: str, trace: Trace) -> TraceMap:
    """Per-cell coherence with the series trace, and what each cell should show."""
    sums: AxisSums = trace.sums if trace.sums is not None else axis_sums(pixels, modality)
    f_cols, phase_cols = _reference(sums.cols, sums.col_count, trace.frequency)
    f_rows, phase_rows = _reference(sums.rows, sums.row_count, trace.frequency)
    n, rows, cols = pixels.shape
    ref_cols = np.cos(2 * np.pi * f_cols * np.arange(cols) + phase_cols).astype(np.float32)
    ref_rows = np.cos(2 * np.pi * f_rows * np.arange(rows) + phase_rows).astype(np.float32)
    n_classes = 4 if modality == "CT" else 2
    gr, gc = rows // CELL, cols // CELL
    num = np.zeros((n, gr, gc), np.float32)
    den = np.zeros((n, gr, gc), np.float32)
    fractions = np.zeros((n_classes, n, gr, gc), np.float32)
    span = BOX // CELL  # windows are summed from whole cells: BOX pixels = span cells
    for z in range(n):
        image = np.asarray(pixels[z], dtype=np.float32)
        tissue = _tissue(image, modality)
        keep = (tissue > 0).astype(np.float32)
        d_cols = np.zeros_like(image)
        d_cols[:, 1:-1] = np.abs(image[:, 2:] - 2 * image[:, 1:-1] + image[:, :-2])
        d_rows = np.zeros_like(image)
        d_rows[1:-1] = np.abs(image[2:] - 2 * image[1:-1] + image[:-2])
        d_cols *= keep
        d_rows *= keep
        projected = d_cols * ref_cols[None, :] + d_rows * ref_rows[:, None]
        num[z] = _window_means(_cell_sums(projected, gr, gc), span)
        den[z] = _window_means(_cell_sums(d_cols + d_rows, gr, gc), span)
        for k in range(n_classes):
            inside = _cell_sums((tissue == k).astype(np.float32), gr, gc)
            fractions[k, z] = _window_means(inside, span) / (CELL * CELL)
    if Z_HALF and n > 1:
        num = ndimage.uniform_filter1d(num, 2 * Z_HALF + 1, axis=0, mode="nearest")
        den = ndimage.uniform_filter1d(den, 2 * Z_HALF + 1, axis=0, mode="nearest")
        fractions = ndimage.uniform_filter1d(fractions, 2 * Z_HALF + 1, axis=1, mode="nearest")
    body = fractions[0] < MAX_OUTSIDE
    # a window that runs off the image sees the zoom's edge handling, not the trace
    margin = -(-BOX // (2 * CELL))
    body[:, :margin] = body[:, -margin:] = False
    body[:, :, :margin] = body[:, :, -margin:] = False
    coherence = np.where(body, 2 * num / np.maximum(den, 1e-6), np.nan)
    # expected coherence: per tissue class, the median over cells dominated by that class
    expected = np.zeros_like(coherence)
    share = fractions[1:].sum(axis=0)
    for k in range(1, n_classes):
        dominated = body & (fractions[k] >= 0.8)
        level = float(np.median(coherence[dominated])) if dominated.sum() >= 8 else 0.0
        expected += fractions[k] / np.maximum(share, 1e-6) * level
    expected = np.where(body, expected, np.nan)
    residual = (coherence - expected)[body]
    sigma = (
        float(1.4826 * np.median(np.abs(residual - np.median(residual)))) if residual.size else 1.0
    )
    return TraceMap(coherence=coherence, expected=expected, sigma=max(sigma, 1e-6))


def _cell_sums(image: np.ndarray, gr: int, gc: int) -> np.ndarray:
    """Sums over ``CELL``×``CELL`` cells (a reshape: far cheaper than a full-resolution filter)."""
    return image[: gr * CELL, : gc * CELL].reshape(gr, CELL, gc, CELL).sum(axis=(1, 3))


def _window_means(cells: np.ndarray, span: int) -> np.ndarray:
    """Mean over ``span``×``span`` cells around each cell (a ``span·CELL``-pixel window)."""
    return ndimage.uniform_filter(cells, span, mode="nearest").astype(np.float32)


def missing_trace(
    pixels: np.ndarray, modality: str, trace: Trace, series_score: float
) -> tuple[np.ndarray, list[Finding]]:
    """A ``(slices, rows/CELL, cols/CELL)`` map in [0, 1] of where the trace is missing, and
    ``local`` findings for its strongest connected holes (none when no hole could be seen)."""
    tmap = trace_map(pixels, modality, trace)
    shortfall = tmap.shortfall
    visible = np.nan_to_num(tmap.expected) > MIN_VISIBLE * tmap.sigma
    holes = visible & (shortfall > MIN_Z)
    anomaly = np.clip(np.where(visible, shortfall / (2 * MIN_Z), 0.0), 0.0, 1.0).astype(np.float32)
    labels, count = ndimage.label(holes)
    findings: list[Finding] = []
    if count:
        index = np.arange(1, count + 1)
        sizes = ndimage.sum_labels(holes, labels, index)
        weight = ndimage.sum_labels(shortfall, labels, index)
        for label in index[np.argsort(-weight)]:
            if sizes[label - 1] < MIN_CELLS or len(findings) >= MAX_FINDINGS:
                continue
            findings.append(_finding(labels == label, tmap, series_score))
    return anomaly, findings


def _finding(region: np.ndarray, tmap: TraceMap, series_score: float) -> Finding:
    per_slice = region.sum(axis=(1, 2))
    # CT-GAN's touch-up cube is centred on its edit: the middle of the hole's slices is the
    # best guess of the edit's slice (exact unless the cube ran off an end of the series)
    spanned = np.flatnonzero(per_slice)
    z = (int(spanned[0]) + int(spanned[-1])) // 2
    if not per_slice[z]:
        z = int(np.argmax(per_slice))
    cells = np.argwhere(region[z])
    row, col = cells.mean(axis=0) * CELL + CELL / 2
    fraction = np.nanmean(
        ((tmap.expected - tmap.coherence) / np.maximum(tmap.expected, 1e-6))[region]
    )
    depth = float(np.clip(fraction, 0.0, 1.0))
    return Finding(
        kind="local",
        score=round(series_score * depth, 4),
        slice=z,
        row=int(row),
        col=int(col),
        radius=float(CELL * np.sqrt(per_slice[z] / np.pi)),
        detail=(
            f"the interpolation trace found in the rest of the series is {100 * depth:.0f}% "
            f"weaker here, over {int(region.sum())} cells on {int((per_slice > 0).sum())} "
            "slice(s): these pixels were not re-gridded with the rest, as when a tool pastes "
            "original pixels back around an edit (CT-GAN's touch-up does)"
        ),
    )
