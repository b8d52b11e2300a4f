"""The detector's manipulation map at image resolution, and the scale it is shown on.

Detectors keep their maps coarse (``Detection.anomaly_map`` at ``map_stride`` pixels per cell:
8 for ``ct-local``, 16 for ``classical`` and ``noise-residual``); cell ``(i, j)`` covers rows
``i*stride .. (i+1)*stride`` and the same columns. ``full_map`` brings such a map to the image's
pixel grid by bilinear interpolation between cell centres; pixels no cell covers (the remainder
of a size that is not a multiple of the stride) get 0.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from medforensics.detect.types import Detection, Finding


def _axis_weights(
    n_out: int, n_cells: int, stride: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interpolation indices and weights from ``n_cells`` cell centres to ``n_out`` pixels."""
    centre = (np.arange(n_out, dtype=np.float64) + 0.5) / stride - 0.5
    centre = np.clip(centre, 0.0, n_cells - 1.0)
    low = np.floor(centre).astype(np.intp)
    high = np.minimum(low + 1, n_cells - 1)
    return low, high, (centre - low).astype(np.float32)


def upsample(cells: np.ndarray, stride: int, rows: int, cols: int) -> np.ndarray:
    """``(slices, r, c)`` cell values → ``(slices, rows, cols)`` pixels, bilinear between centres.

    Pixels beyond ``r * stride`` rows or ``c * stride`` columns are not covered and are 0.
    """
    stride = max(1, int(stride))
    n, r, c = cells.shape
    out = np.zeros((n, rows, cols), dtype=np.float32)
    if r == 0 or c == 0 or n == 0:
        return out
    covered_r, covered_c = min(rows, r * stride), min(cols, c * stride)
    if stride == 1:
        out[:, :covered_r, :covered_c] = cells[:, :covered_r, :covered_c]
        return out
    r0, r1, wr = _axis_weights(covered_r, r, stride)
    c0, c1, wc = _axis_weights(covered_c, c, stride)
    wr, wc = wr[:, None], wc[None, :]
    for z in range(n):  # one slice at a time: memory stays at one full-size map
        plane = cells[z].astype(np.float32, copy=False)
        top = plane[r0][:, c0] * (1 - wc) + plane[r0][:, c1] * wc
        bottom = plane[r1][:, c0] * (1 - wc) + plane[r1][:, c1] * wc
        out[z, :covered_r, :covered_c] = top * (1 - wr) + bottom * wr
    return out


def findings_map(findings: Iterable[Finding], shape: tuple[int, int, int]) -> np.ndarray:
    """Discs of each finding's radius, valued at its score (the larger where discs overlap).

    Findings without extent (radius 0: whole-image or header findings) draw nothing.
    """
    slices, rows, cols = shape
    out = np.zeros(shape, dtype=np.float32)
    yy, xx = np.ogrid[:rows, :cols]
    for finding in findings:
        if finding.radius <= 0 or not 0 <= finding.slice < slices:
            continue
        disc = (yy - finding.row) ** 2 + (xx - finding.col) ** 2 <= finding.radius**2
        plane = out[finding.slice]
        np.maximum(plane, np.where(disc, np.float32(finding.score), np.float32(0)), out=plane)
    return out


def full_map(detection: Detection, shape: tuple[int, int, int]) -> np.ndarray:
    """The detection's map at image resolution: float32 ``(slices, rows, cols)`` in [0, 1].

    The detector's ``anomaly_map`` upsampled by ``map_stride`` (bilinear between cell centres),
    cropped or zero-padded to ``shape``; without a map, discs built from the findings; zeros when
    there is neither.
    """
    slices, rows, cols = (int(v) for v in shape)
    cells = detection.anomaly_map
    if cells is None or cells.ndim != 3 or cells.size == 0:
        heat = findings_map(detection.findings, (slices, rows, cols))
    else:
        cells = np.nan_to_num(np.asarray(cells, dtype=np.float32), nan=0.0)
        if cells.shape[0] == 1 and slices > 1:
            cells = np.broadcast_to(cells, (slices, *cells.shape[1:]))
        heat = np.zeros((slices, rows, cols), dtype=np.float32)
        n = min(slices, cells.shape[0])
        heat[:n] = upsample(cells[:n], detection.map_stride, rows, cols)
    return np.clip(heat, 0.0, 1.0, out=heat)


def heat_baseline(heat: np.ndarray, dense: bool = True) -> float:
    """The map value of the image's typical region: the median non-zero value of a dense map.

    Calibrated per-region probabilities sit near the detector's base rate everywhere in an
    untouched image (about 0.45 for ``classical``, 0.1 for ``ct-local`` on a phantom); painting
    them as they are would colour every authentic body. A detector's own (dense) map is therefore
    shown as its excess over this baseline; a map drawn from findings (``dense=False``) is shown as
    it is (baseline 0).
    """
    if not dense:
        return 0.0
    # a regular subsample keeps the median cheap on long series; cells repeat anyway
    flat = heat.reshape(-1)
    step = max(1, flat.size // 4_000_000)
    positive = flat[::step]
    positive = positive[positive > 0]
    return float(np.median(positive)) if positive.size else 0.0


def shown_heat(heat: np.ndarray, baseline: float) -> np.ndarray:
    """``heat`` on the display scale: ``(p - baseline) / (1 - baseline)`` clipped to [0, 1]."""
    if baseline >= 1.0:
        return np.zeros(heat.shape, dtype=np.float32)
    shown = (np.asarray(heat, dtype=np.float32) - np.float32(baseline)) / np.float32(1.0 - baseline)
    return np.clip(shown, 0.0, 1.0)


def display_heat(heat: np.ndarray, dense: bool = True) -> tuple[np.ndarray, float]:
    """``heat`` on the display scale (see ``heat_baseline``) and the baseline used."""
    baseline = heat_baseline(heat, dense)
    return shown_heat(heat, baseline), baseline


def peak(heat: np.ndarray) -> tuple[int, int, int] | None:
    """``(slice, row, col)`` of the map's largest value (the first one on ties), None if all 0."""
    if heat.size == 0 or not np.any(heat > 0):
        return None
    z, y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(z), int(y), int(x)


def slice_order(heat: np.ndarray) -> list[int]:
    """Slice indices, most suspicious (largest map value) first; ties keep slice order."""
    if heat.shape[0] == 0:
        return []
    per_slice = heat.reshape(heat.shape[0], -1).max(axis=1)
    return [int(i) for i in np.argsort(-per_slice, kind="stable")]
