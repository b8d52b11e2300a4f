"""Pictures for reports: the overlay of a slice, crops around findings, a slice strip, PNG bytes.

Everything here turns arrays into ``(H, W, 3)`` uint8 pictures; the report modules only place
them. Heat passed in is already on the display scale (``maps.shown_heat``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from medforensics.explain.overlay import draw_ring, heat_colours, overlay_rgb
from medforensics.explain.window import to_uint8

#: crops are at least this many image pixels wide, and shown this many screen pixels wide
CROP_MIN_PIXELS = 48
CROP_SHOWN = 192
#: slices shown in a strip
STRIP_SLICES = 8


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of a ``(H, W)`` gray or ``(H, W, 3)`` RGB uint8 array."""
    if image.dtype != np.uint8:
        raise ValueError(f"PNG pictures must be uint8, got {image.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def enlarge(rgb: np.ndarray, min_side: int) -> np.ndarray:
    """Nearest-neighbour enlargement by a whole factor so the longer side reaches ``min_side``."""
    factor = max(1, math.ceil(min_side / max(rgb.shape[0], rgb.shape[1], 1)))
    if factor == 1:
        return rgb
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def label(rgb: np.ndarray, text: str) -> np.ndarray:
    """``rgb`` with ``text`` written in its top-left corner on a dark box (a copy)."""
    picture = Image.fromarray(rgb)
    draw = ImageDraw.Draw(picture)
    _left, _top, right, bottom = draw.textbbox((3, 2), text)
    draw.rectangle((0, 0, right + 3, bottom + 2), fill=(0, 0, 0))
    draw.text((3, 2), text, fill=(255, 255, 255))
    return np.asarray(picture).copy()


def slice_overlay(
    pixels: np.ndarray,
    heat: np.ndarray,
    window: tuple[float, float],
    alpha: float = 0.45,
    floor: float = 0.2,
) -> np.ndarray:
    """One slice in ``window`` with ``heat`` (display scale) overlaid: ``(H, W, 3)`` uint8."""
    return overlay_rgb(to_uint8(pixels, *window), heat, alpha=alpha, floor=floor)


def ring_findings(
    rgb: np.ndarray, rings: Sequence[tuple[float, float, float]], scale: float = 1.0
) -> np.ndarray:
    """A copy of ``rgb`` with a ring ``(row, col, radius)`` (image pixels) per finding."""
    out = rgb.copy()
    for row, col, radius in rings:
        draw_ring(
            out,
            (row + 0.5) * scale - 0.5,
            (col + 0.5) * scale - 0.5,
            max(radius, 3.0) * scale,
            thickness=max(1.2, scale * 0.8),
        )
    return out


def crop_box(
    shape: tuple[int, int], row: int, col: int, radius: float, min_size: int = CROP_MIN_PIXELS
) -> tuple[int, int, int, int]:
    """``(r0, r1, c0, c1)``: a square around ``(row, col)`` of side ``max(min_size, 3·radius)``,
    shifted to stay inside an image of ``shape`` (and cut to it when the image is smaller)."""
    side = int(max(min_size, math.ceil(3 * radius)))
    boxes: list[int] = []
    for centre, limit in zip((row, col), shape, strict=True):
        span = min(side, limit)
        start = int(np.clip(centre - span // 2, 0, limit - span))
        boxes.extend((start, start + span))
    return boxes[0], boxes[1], boxes[2], boxes[3]


def finding_crop(
    overlay: np.ndarray, row: int, col: int, radius: float, shown: int = CROP_SHOWN
) -> np.ndarray:
    """The part of a slice overlay around a finding, enlarged, with the finding's ring."""
    r0, r1, c0, c1 = crop_box(overlay.shape[:2], row, col, radius)
    crop = overlay[r0:r1, c0:c1]
    factor = max(1, shown // max(crop.shape[0], crop.shape[1], 1))
    crop = np.repeat(np.repeat(crop, factor, axis=0), factor, axis=1)
    return ring_findings(crop, [(row - r0, col - c0, radius)], scale=float(factor))


def strip_indices(per_slice_peak: Sequence[float], count: int = STRIP_SLICES) -> list[int]:
    """Slices for a strip: up to half the most suspicious ones, the rest evenly spaced; sorted.

    Args:
        per_slice_peak: the largest map value of each slice.
        count: slices wanted (all of them when the volume has fewer).
    """
    n = len(per_slice_peak)
    if n <= count:
        return list(range(n))
    peaks = np.asarray(per_slice_peak, dtype=np.float64)
    chosen: list[int] = []
    for index in np.argsort(-peaks, kind="stable")[: count // 2]:
        if peaks[index] > 0:
            chosen.append(int(index))
    for index in np.linspace(0, n - 1, count + 2).round().astype(int)[1:-1]:
        if len(chosen) >= count:
            break
        if int(index) not in chosen:
            chosen.append(int(index))
    for index in range(n):  # rounding may have collided: fill up in order
        if len(chosen) >= count:
            break
        if index not in chosen:
            chosen.append(index)
    return sorted(chosen)


def colour_bar(width: int = 256, height: int = 14, floor: float = 0.2) -> np.ndarray:
    """The heat ramp as a picture: gray (not drawn) below ``floor``, yellow → red above."""
    t = np.linspace(0.0, 1.0, width, dtype=np.float32)
    colours = heat_colours((t - floor) / (1.0 - floor))
    colours[t < floor] = 128.0
    return np.repeat(np.rint(colours)[None].astype(np.uint8), height, axis=0)
