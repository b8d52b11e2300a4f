"""The viewer's pictures, drawn by ``medforensics.explain``: one slice, a window, the map, rings.

The page only chooses (slice, window preset, map on/off, opacity, which findings to ring); every
pixel is produced by the same functions the reports use, so what the app shows is what the PDF
shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medforensics.detect.types import Detection
from medforensics.explain.maps import full_map, heat_baseline, peak, shown_heat
from medforensics.explain.render import enlarge, png_bytes, ring_findings, slice_overlay
from medforensics.explain.window import (
    LUNG_WINDOW,
    SOFT_TISSUE_WINDOW,
    display_window,
    to_uint8,
)
from medforensics.io.types import ImageVolume
from medforensics.report.build import ALPHA, FLOOR
from medforensics.scan import ResultFinding

#: (centre, width) in HU of the bone window, the third CT preset besides lung and soft tissue
BONE_WINDOW = (400.0, 1800.0)
#: default opacity of the map, as in the reports
DEFAULT_OPACITY = ALPHA
#: the viewer enlarges small images (nearest neighbour) until their longer side reaches this
SHOWN_PIXELS = 512


def window_presets(volume: ImageVolume) -> dict[str, tuple[float, float]]:
    """Named ``(centre, width)`` windows for ``volume``; the first is the automatic choice.

    CT: auto (``explain.window.display_window``: lung or soft tissue), lung, soft tissue, bone.
    Other modalities store arbitrary units: auto only (1st..99th percentile).
    """
    presets = {"auto": display_window(volume)}
    if volume.modality == "CT":
        presets.update(
            {"lung": LUNG_WINDOW, "soft tissue": SOFT_TISSUE_WINDOW, "bone": BONE_WINDOW}
        )
    return presets


@dataclass
class MapView:
    """The detector's map at image resolution and the baseline it is shown above."""

    heat: np.ndarray
    baseline: float
    dense: bool

    @classmethod
    def of(cls, detection: Detection, shape: tuple[int, int, int]) -> MapView:
        heat = full_map(detection, shape)
        dense = detection.anomaly_map is not None
        return cls(heat, heat_baseline(heat, dense), dense)

    def shown(self, index: int) -> np.ndarray:
        """Slice ``index`` of the map on the display scale."""
        return shown_heat(self.heat[index], self.baseline)

    def start_slice(self, findings: Sequence[ResultFinding]) -> int:
        """The map's most suspicious slice, else the first finding's, else the middle one."""
        top = peak(self.heat)
        if top is not None:
            return top[0]
        if findings:
            return int(np.clip(findings[0].slice, 0, self.heat.shape[0] - 1))
        return self.heat.shape[0] // 2

    def slice_peaks(self) -> np.ndarray:
        """The largest map value of each slice."""
        return self.heat.reshape(self.heat.shape[0], -1).max(axis=1)


@dataclass(frozen=True)
class View:
    """What the page asked to see."""

    index: int
    window: tuple[float, float]
    show_map: bool = True
    opacity: float = DEFAULT_OPACITY
    rings: bool = True
    focus: int | None = None


def rings_on(
    findings: Sequence[ResultFinding], index: int, focus: int | None = None
) -> list[tuple[float, float, float]]:
    """``(row, col, radius)`` of the findings to ring on slice ``index``.

    As in the reports, findings with a radius (a region); the finding ``focus`` (0-based, the
    one the user jumped to) is ringed even without one, unless it concerns the whole image.
    """
    rings = []
    for number, f in enumerate(findings):
        if f.slice != index:
            continue
        focused = number == focus and f.kind != "global"
        if f.radius > 0 or focused:
            rings.append((float(f.row), float(f.col), float(f.radius)))
    return rings


def render(
    volume: ImageVolume,
    maps: MapView | None,
    findings: Sequence[ResultFinding],
    view: View,
    shown_pixels: int = SHOWN_PIXELS,
) -> np.ndarray:
    """The slice as the page shows it: ``(H, W, 3)`` uint8, enlarged for small images."""
    pixels = volume.pixels[view.index]
    if view.show_map and maps is not None and view.opacity > 0:
        rgb = slice_overlay(
            pixels, maps.shown(view.index), view.window, alpha=view.opacity, floor=FLOOR
        )
    else:
        rgb = np.repeat(to_uint8(pixels, *view.window)[..., None], 3, axis=2)
    big = enlarge(rgb, shown_pixels)
    if not view.rings:
        return big
    scale = big.shape[0] / rgb.shape[0]
    return ring_findings(big, rings_on(findings, view.index, view.focus), scale)


def render_png(
    volume: ImageVolume, maps: MapView | None, findings: Sequence[ResultFinding], view: View
) -> bytes:
    """``render`` as PNG bytes (lossless, so the colours the map uses reach the screen)."""
    return png_bytes(render(volume, maps, findings, view))


def mask_png(
    volume: ImageVolume, mask: np.ndarray, index: int, window: tuple[float, float]
) -> bytes:
    """A slice with a boolean mask (e.g. an attack's ground truth) painted red over it."""
    heat = np.where(mask[index], np.float32(1.0), np.float32(0.0))
    rgb = slice_overlay(volume.pixels[index], heat, window, alpha=0.5, floor=FLOOR)
    return png_bytes(enlarge(rgb, SHOWN_PIXELS))


def slice_png(pixels: np.ndarray, window: tuple[float, float]) -> bytes:
    """One 2D slice in ``window``, gray, enlarged for small images."""
    gray = to_uint8(pixels, *window)
    return png_bytes(enlarge(np.repeat(gray[..., None], 3, axis=2), SHOWN_PIXELS))
