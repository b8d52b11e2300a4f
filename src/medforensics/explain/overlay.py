"""Heat drawn over gray: a yellow-to-red ramp above a floor, the image untouched below it.

The ramp runs from yellow (255, 255, 0) at the floor to red (255, 0, 0) at 1 and is blended with
the gray at a constant ``alpha``. Red minus green of a blended pixel is then ``255·alpha·t``
whatever the gray underneath (``t`` the heat's position between floor and 1), so the hottest
pixel of a saved overlay can be found again from its colours alone. Findings are ringed in cyan,
which no heat colour uses.
"""

from __future__ import annotations

import numpy as np

#: ring colour for findings (not on the heat ramp)
RING_RGB = (0, 255, 255)


def heat_colours(t: np.ndarray) -> np.ndarray:
    """Ramp colours ``(..., 3)`` float32 for ``t`` in [0, 1]: yellow → orange → red."""
    t = np.clip(np.asarray(t, dtype=np.float32), 0.0, 1.0)
    colours = np.empty((*t.shape, 3), dtype=np.float32)
    colours[..., 0] = 255.0
    colours[..., 1] = 255.0 * (1.0 - t)
    colours[..., 2] = 0.0
    return colours


def overlay_rgb(
    gray_u8: np.ndarray, heat: np.ndarray, alpha: float = 0.45, floor: float = 0.2
) -> np.ndarray:
    """Blend ``heat`` (in [0, 1]) over ``gray_u8``; pixels with heat below ``floor`` stay gray.

    Args:
        gray_u8: ``(H, W)`` uint8 image (see ``window.to_uint8``).
        heat: ``(H, W)`` values in [0, 1].
        alpha: opacity of the heat colour where it is drawn.
        floor: heat below this is not drawn.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    if gray_u8.ndim != 2 or heat.shape != gray_u8.shape:
        raise ValueError(
            f"overlay needs a 2D gray image and a heat map of the same shape, got "
            f"{gray_u8.shape} and {heat.shape}"
        )
    if not 0.0 <= floor < 1.0 or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"need 0 <= floor < 1 and 0 <= alpha <= 1, got {floor} and {alpha}")
    gray = gray_u8.astype(np.float32)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0)
    drawn = heat >= floor
    if np.any(drawn):
        t = (heat[drawn] - floor) / (1.0 - floor)
        rgb[drawn] = (1.0 - alpha) * rgb[drawn] + alpha * heat_colours(t)
    return np.rint(np.clip(rgb, 0.0, 255.0)).astype(np.uint8)


def hottest_pixel(rgb: np.ndarray) -> tuple[int, int] | None:
    """``(row, col)`` of the most intense heat colour in an ``overlay_rgb`` image, None if none.

    Uses red minus green (``255·alpha·t``, independent of the gray). When several pixels tie
    (a plateau after rounding to 8 bits), the one nearest the plateau's centroid is returned.
    """
    redness = rgb[..., 0].astype(np.int16) - rgb[..., 1].astype(np.int16)
    blue_free = rgb[..., 2].astype(np.int16) <= np.minimum(rgb[..., 0], rgb[..., 1])
    redness = np.where(blue_free, redness, -1)
    best = int(redness.max()) if redness.size else 0
    if best <= 0:
        return None
    rows, cols = np.nonzero(redness == best)
    centre_r, centre_c = rows.mean(), cols.mean()
    nearest = int(np.argmin((rows - centre_r) ** 2 + (cols - centre_c) ** 2))
    return int(rows[nearest]), int(cols[nearest])


def draw_ring(
    rgb: np.ndarray,
    row: float,
    col: float,
    radius: float,
    colour: tuple[int, int, int] = RING_RGB,
    thickness: float = 1.2,
) -> np.ndarray:
    """Draw a circle outline of ``radius`` pixels around ``(row, col)`` into ``rgb`` (in place)."""
    height, width = rgb.shape[:2]
    yy, xx = np.ogrid[:height, :width]
    distance = np.sqrt((yy - row) ** 2 + (xx - col) ** 2)
    radius = max(float(radius), 2.0)
    rgb[np.abs(distance - radius) <= thickness / 2.0 + 0.35] = colour
    return rgb
