"""Before/after crops of every attack, as small PNGs a reader can judge by eye."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from medforensics.io.types import ImageVolume
from medforensics.tamper.base import AttackError, TamperResult
from medforensics.tamper.registry import list_attacks, simulate

CROP_PX = 160
#: CT display window (low, high) in HU: a lung window shows nodules and parenchyma
CT_WINDOW = (-1350.0, 150.0)


def display_range(volume: ImageVolume, plane: np.ndarray) -> tuple[float, float]:
    """The grey-level range a crop is shown with: lung window for CT, percentiles otherwise."""
    if volume.modality == "CT":
        return CT_WINDOW
    low, high = np.percentile(plane, [1, 99])
    return float(low), float(max(high, low + 1.0))


def _crop(plane: np.ndarray, centre: tuple[int, int], size: int) -> tuple[slice, slice]:
    rows, cols = plane.shape
    half = size // 2
    y0 = min(max(centre[0] - half, 0), max(rows - size, 0))
    x0 = min(max(centre[1] - half, 0), max(cols - size, 0))
    return slice(y0, y0 + size), slice(x0, x0 + size)


def render_pair(
    volume: ImageVolume, result: TamperResult, title: str, crop: int = CROP_PX
) -> Image.Image:
    """Three panels around the attack's centre slice: before, after, after with the mask outline.

    Laundering and other whole-image attacks are shown around the image centre.
    """
    centre = result.truth.centre or tuple(n // 2 for n in volume.shape)
    z = int(centre[0])
    before, after = volume.pixels[z], result.pixels[z]
    mask = result.truth.mask[z]
    size = crop
    if 0 < mask.sum() < mask.size:  # large regions (radiographs) get a larger crop, shown smaller
        ys, xs = np.nonzero(mask)
        size = max(crop, int(2.2 * max(np.ptp(ys), np.ptp(xs))))
    size = min(size, *before.shape)
    window = _crop(before, (int(centre[1]), int(centre[2])), size)
    low, high = display_range(volume, before[window])

    def panel(plane: np.ndarray, outline: np.ndarray | None = None) -> Image.Image:
        grey = np.clip((plane[window] - low) / (high - low) * 255.0, 0, 255).astype(np.uint8)
        rgb = np.repeat(grey[..., None], 3, axis=2)
        image = Image.fromarray(rgb).resize((crop, crop), Image.Resampling.LANCZOS)
        if outline is not None:
            small = (
                np.asarray(
                    Image.fromarray(outline[window].astype(np.uint8) * 255).resize((crop, crop))
                )
                > 127
            )
            edge = small ^ ndimage.binary_erosion(small)
            rgb_small = np.asarray(image).copy()
            rgb_small[edge] = (255, 60, 60)
            image = Image.fromarray(rgb_small)
        return image

    panels = [panel(before), panel(after), panel(after, mask)]
    strip = Image.new("RGB", (3 * crop + 8, crop + 14))
    for k, image in enumerate(panels):
        strip.paste(image, (k * (crop + 4), 14))
    ImageDraw.Draw(strip).text((4, 1), title[:80], fill=(255, 255, 255))
    return strip


def render_gallery(
    volumes: dict[str, ImageVolume],
    out_dir: str | Path,
    seed: int = 0,
    attacks: Sequence[str] | None = None,
    overrides: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> list[Path]:
    """Render every attack on every named volume to ``out_dir/<name>_<attack>.png``.

    Args:
        volumes: display name -> authentic volume.
        out_dir: output folder, created if missing.
        seed: base seed; volume ``k`` uses ``[seed, k]`` (so the gallery is reproducible).
        attacks: attack names (default: every attack that supports the volume).
        overrides: ``(name, attack)`` -> parameter overrides, e.g. a real tumour box for removal.

    Returns:
        The PNG paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index, (name, volume) in enumerate(volumes.items()):
        for attack in attacks or list_attacks(volume.modality):
            params = (overrides or {}).get((name, attack), {})
            # one seed stream per volume, so the gallery shows different draws on each
            try:
                result = simulate(volume, attack, [seed, index], **params)
            except AttackError:
                if attacks:  # asked for by name: the caller must hear why it failed
                    raise
                continue  # e.g. 'synthetic' without a trained generator: not for the default set
            detail = _describe(result)
            image = render_pair(volume, result, f"{name} {attack} {detail}")
            path = out / f"{name}_{attack}.png"
            image.save(path, optimize=True)
            written.append(path)
    return written


def _describe(result: TamperResult) -> str:
    p = result.truth.params
    if "inner" in p:  # CT-GAN's pipeline around one of our edits
        inner = replace(result.truth, attack=p["inner"], params=p["inner_params"])
        return f"{_describe(replace(result, truth=inner))}, 1 mm round trip + touch-up"
    if result.truth.attack == "inject":
        return f"{p['nodule_type']} {p['diameter_mm']:.0f}mm"
    if result.truth.attack in ("inpaint", "remove"):
        return str(p.get("method", ""))
    if result.truth.attack == "launder":
        return "+".join(step["op"] for step in p["steps"])
    return f"seed-slice {result.truth.centre[0] if result.truth.centre else ''}"
