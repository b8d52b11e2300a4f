"""Lesion injection: a fake nodule placed in plausible anatomy (label ``FM``).

The nodule is an ellipsoid in millimetres whose surface is lobulated by a few random bumps,
optionally spiculated, with a soft margin and a smooth internal texture. On thick CT slices
it is averaged over three sub-slices, so it shows the partial-volume look of a real nodule.

How it meets the image depends on the physics:

* CT and MR (``blend``): ``out = bg*(1-a) + lesion*a + noise*sqrt(1-(1-a)^2)``. The noise has
  the NPS and slice correlation measured around the site (``texture.noise_for_region``), so the
  lesion is exactly as noisy as its surroundings instead of a smooth, pasted-looking patch.
* Radiographs (``additive``): attenuation adds along the ray, so ``out = bg + a*contrast``;
  the background's own noise is kept untouched and nothing needs to be synthesised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medforensics.io.types import ImageVolume
from medforensics.tamper.anatomy import (
    clip_box,
    is_inverted,
    is_projection,
    sample_location,
    spacing_mm,
    value_range,
)
from medforensics.tamper.base import Attack, GroundTruth, Params, TamperResult
from medforensics.tamper.registry import register_attack
from medforensics.tamper.texture import blend_with_noise, noise_for_region

NODULE_TYPES = ("solid", "part-solid", "ground-glass", "spiculated")
DIAMETER_MM = (3.0, 30.0)
#: the noise is learnt from surroundings within this many HU of the site (see noise_for_region)
TISSUE_HU = 120.0


def _unit_vectors(rng: np.random.Generator, count: int, planar: bool) -> np.ndarray:
    vectors = rng.standard_normal((count, 3))
    if planar:
        vectors[:, 0] = 0.0
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


def _shape_alpha(
    offsets_mm: tuple[np.ndarray, np.ndarray, np.ndarray], params: Params, planar: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Opacity of the nodule body and of its solid core at the given ``(z, y, x)`` offsets."""
    dz, dy, dx = offsets_mm
    radius = params["diameter_mm"] / 2.0
    ratio_z, ratio_y, ratio_x = params["axis_ratios"]
    theta = math.radians(params["rotation_deg"])
    u = dy * math.cos(theta) + dx * math.sin(theta)
    v = -dy * math.sin(theta) + dx * math.cos(theta)
    rho = np.sqrt(
        (dz / (radius * ratio_z)) ** 2
        + (u / (radius * ratio_y)) ** 2
        + (v / (radius * ratio_x)) ** 2
    )
    norm = np.sqrt(dz**2 + dy**2 + dx**2) + 1e-6
    directions = np.stack([dz / norm, dy / norm, dx / norm], axis=-1)
    shape_rng = np.random.default_rng(params["shape_seed"])
    lobes = _unit_vectors(shape_rng, params["lobes"], planar)
    weights = np.asarray(shape_rng.uniform(0.5, 1.0, int(params["lobes"])))
    bumps = np.zeros(rho.shape)
    for weight, lobe in zip(weights, lobes, strict=True):
        bumps += weight * np.exp(5.0 * (directions @ lobe - 1.0))
    bumps -= float(np.mean(weights)) * 0.2  # mean of exp(5(cos-1)) over directions is about 0.2
    rho = rho / np.maximum(1.0 + params["lobulation"] * bumps, 0.3)
    kind = params["nodule_type"]
    margin = max(params["ggo_margin_mm" if kind == "ground-glass" else "margin_mm"], 0.05)
    body = 1.0 / (1.0 + np.exp(-np.clip((1.0 - rho) * radius / margin, -50, 50)))
    core = np.zeros_like(body)
    if kind == "part-solid":
        core_rho = rho / params["core_fraction"]
        core = 1.0 / (1.0 + np.exp(-np.clip((1.0 - core_rho) * radius / margin, -50, 50)))
    if kind == "spiculated":
        points = np.stack([dz, dy, dx], axis=-1)
        for spike in _unit_vectors(shape_rng, params["spicule_count"], planar):
            length = radius * params["spicule_length"] * shape_rng.uniform(0.6, 1.0)
            along = points @ spike
            across = np.linalg.norm(points - along[..., None] * spike, axis=-1)
            taper = np.clip(1.0 - along / length, 0.0, 1.0) * (along > 0)
            thickness = 0.35 + 0.5 * taper
            body = np.maximum(body, 0.85 * taper**0.6 * np.exp(-((across / thickness) ** 2)))
    return body, core


def lesion_texture(shape: tuple[int, ...], seed: int, sigma_px: tuple[float, ...]) -> np.ndarray:
    """A smooth unit-variance random field: the lesion's internal texture."""
    field = ndimage.gaussian_filter(
        np.random.default_rng(seed + 1).standard_normal(shape), sigma_px
    )
    return (field / (field.std() + 1e-9)).astype(np.float32)


def lesion_reach_mm(params: Params) -> float:
    """How far (mm) from its centre the lesion can change a pixel: lobes, spicules, margins."""
    radius = params["diameter_mm"] / 2.0
    spiculated = params["nodule_type"] == "spiculated"
    reach = radius * max(
        1.0 + params["lobulation"], params["spicule_length"] if spiculated else 1.0
    )
    return float(reach + 4.0 * max(params["margin_mm"], params["ggo_margin_mm"]))


def sub_slice_offsets(thickness_mm: float, planar: bool) -> tuple[float, ...]:
    """Offsets (mm, along the slice normal) averaged for the partial-volume look of a slice."""
    return (0.0,) if planar else (-thickness_mm / 3.0, 0.0, thickness_mm / 3.0)


def lesion_opacity(
    offset_sets: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    params: Params,
    planar: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Opacity of the lesion and of its solid core, averaged over sub-slice offset grids.

    Args:
        offset_sets: ``(dz, dy, dx)`` offsets in mm from the lesion centre, in the lesion's own
            frame, one set per sub-slice position (see ``sub_slice_offsets``).
        params: the lesion's shape parameters (see ``LesionInjection.sample_params``).
        planar: a 2D image: lobes and spicules stay in the image plane.
    """
    kind = params["nodule_type"]
    if kind not in NODULE_TYPES:
        raise ValueError(f"nodule_type {kind!r} is not one of {', '.join(NODULE_TYPES)}")
    body = np.zeros(offset_sets[0][0].shape)
    core = np.zeros(offset_sets[0][0].shape)
    for offsets in offset_sets:  # partial-volume averaging over the slice thickness
        b, c = _shape_alpha(offsets, params, planar)
        body += b / len(offset_sets)
        core += c / len(offset_sets)
    alpha = np.clip((body - 0.01) / 0.99, 0.0, 1.0)
    if kind == "ground-glass":  # vessels stay visible through ground glass
        alpha = alpha * params["ggo_opacity"]
    return alpha, core


def nodule_alpha(
    volume: ImageVolume, params: Params
) -> tuple[tuple[slice, slice, slice], np.ndarray, np.ndarray]:
    """The box the nodule of ``params`` can reach, its opacity there and its solid core's."""
    spacing = spacing_mm(volume)
    reach = lesion_reach_mm(params)
    centre = tuple(int(c) for c in params["centre"])
    half = (
        math.ceil(reach / spacing[0]) if volume.is_volume else 0,
        math.ceil(reach / spacing[1]),
        math.ceil(reach / spacing[2]),
    )
    box = clip_box(centre, half, volume.shape)  # type: ignore[arg-type]
    grids = np.meshgrid(
        *[
            (np.arange(b.start, b.stop) - c) * s
            for b, c, s in zip(box, centre, spacing, strict=True)
        ],
        indexing="ij",
    )
    planar = not volume.is_volume
    alpha, core = lesion_opacity(
        [
            (grids[0] + offset, grids[1], grids[2])
            for offset in sub_slice_offsets(spacing[0], planar)
        ],
        params,
        planar,
    )
    return box, alpha, core


def tissue_statistics(values: np.ndarray) -> tuple[float, float]:
    """Median and spread (interquartile range, at least 1) of the tissue around a site."""
    median = float(np.median(values))
    q25, q75 = np.percentile(values, [25, 75])
    return median, max(float(q75 - q25), 1.0)


def blend_mr_lesion(
    pixels: np.ndarray,
    box: tuple[slice, slice, slice],
    alpha: np.ndarray,
    contrast: float,
    texture: np.ndarray,
    texture_rel: float,
    rng: np.random.Generator,
    tissue: tuple[float, float] | None = None,
) -> tuple[np.ndarray, dict[str, float | str]]:
    """An MR lesion blended into ``pixels[box]`` with the site's own noise.

    The lesion's value is ``median + contrast * spread`` of the tissue (``tissue``, default the
    statistics of ``pixels[box]``), so its contrast is relative to the sequence's own scale.
    """
    background = pixels[box]
    median, spread = tissue if tissue is not None else tissue_statistics(background)
    content = median + contrast * spread + texture_rel * spread * texture
    noise, model = noise_for_region(pixels, box, rng)
    patch = blend_with_noise(background, content, alpha, noise)
    return patch, {"mode": "blend", **model.describe()}


def paint_patch(
    volume: ImageVolume,
    box: tuple[slice, slice, slice],
    alpha: np.ndarray,
    patch: np.ndarray,
    centre: tuple[int, int, int],
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """A copy of the pixels with ``patch`` where ``alpha > 0``; its mask and a centre inside it.

    ``centre`` is kept when the mask holds it, else the voxel of highest opacity is taken.
    """
    low_value, high_value = value_range(volume)
    background = volume.pixels[box]
    pixels = volume.pixels.copy()
    mask = np.zeros(volume.shape, dtype=bool)
    mask[box] = alpha > 0
    pixels[box] = np.where(alpha > 0, np.clip(patch, low_value, high_value), background)
    if not mask[centre]:
        peak = np.unravel_index(int(np.argmax(alpha)), alpha.shape)
        z, y, x = (int(p + b.start) for p, b in zip(peak, box, strict=True))
        centre = (z, y, x)
    return pixels, mask, centre


@register_attack
class LesionInjection(Attack):
    """Inject a lobulated nodule (3-30 mm) into lung (CT, X-ray) or brain/foreground (MR)."""

    name = "inject"
    label = "FM"
    modalities = ()

    def sample_params(self, volume: ImageVolume, rng: np.random.Generator) -> Params:
        spacing = spacing_mm(volume)
        kind = NODULE_TYPES[int(rng.integers(len(NODULE_TYPES)))]
        diameter = float(np.exp(rng.uniform(*np.log(DIAMETER_MM))))
        half_slices = math.ceil(diameter / 2.0 / spacing[0]) if volume.is_volume else 0
        centre, placement = sample_location(volume, rng, 0.6 * diameter / spacing[1], half_slices)
        # every type-specific value is always drawn, and ``apply`` picks by ``nodule_type``, so
        # overriding the type alone gives a consistent nodule
        params: Params = {
            "centre": list(centre),
            "placement": placement,
            "nodule_type": kind,
            "diameter_mm": round(diameter, 2),
            "axis_ratios": [1.0, round(float(rng.uniform(0.75, 1.0)), 3), 1.0],
            "rotation_deg": round(float(rng.uniform(0.0, 180.0)), 1),
            "lobes": int(rng.integers(3, 8)),
            "lobulation": round(float(rng.uniform(0.0, 0.3)), 3),
            "margin_mm": round(float(rng.uniform(0.2, 0.8)), 3),
            "ggo_margin_mm": round(float(rng.uniform(0.6, 2.0)), 3),
            "spicule_count": int(rng.integers(6, 16)),
            "spicule_length": round(float(rng.uniform(1.4, 2.4)), 3),
            "core_fraction": round(float(rng.uniform(0.3, 0.65)), 3),
            "ggo_opacity": round(float(rng.uniform(0.6, 0.95)), 3),
            "shape_seed": int(rng.integers(2**31)),
        }
        texture = float(rng.uniform(0.0, 1.0))
        if volume.modality == "CT":
            params["solid_hu"] = round(float(rng.uniform(-20.0, 60.0)), 1)
            params["ggo_hu"] = round(float(rng.uniform(-650.0, -350.0)), 1)
            params["texture_hu"] = round(10.0 + 30.0 * texture, 1)
        elif is_projection(volume):
            params["contrast"] = round(float(rng.uniform(0.05, 0.25)), 4)
            params["texture_rel"] = round(0.1 * texture, 4)
        else:
            sign = 1.0 if rng.random() < 0.5 else -1.0
            params["contrast"] = round(sign * float(rng.uniform(0.8, 2.0)), 3)
            params["texture_rel"] = round(0.2 * texture, 4)
        return params

    def apply(self, volume: ImageVolume, params: Params, rng: np.random.Generator) -> TamperResult:
        spacing = spacing_mm(volume)
        kind = params["nodule_type"]
        centre = tuple(int(c) for c in params["centre"])
        box, alpha, core = nodule_alpha(volume, params)
        background = volume.pixels[box]
        texture = lesion_texture(
            alpha.shape, params["shape_seed"], (0.01, 1.0 / spacing[1], 1.0 / spacing[2])
        )
        if volume.modality == "CT":
            if kind == "part-solid":  # a solid core in a ground-glass halo
                content = params["ggo_hu"] + (params["solid_hu"] - params["ggo_hu"]) * core
            else:
                density = params["ggo_hu"] if kind == "ground-glass" else params["solid_hu"]
                content = np.full(alpha.shape, density)
            content = content + params["texture_hu"] * texture
            noise, model = noise_for_region(volume.pixels, box, rng, tissue_tolerance=TISSUE_HU)
            patch = blend_with_noise(background, content, alpha, noise)
            stats: dict[str, float | str] = {"mode": "blend", **model.describe()}
        elif is_projection(volume):
            low, high = np.percentile(background, [10, 90])
            amplitude = params["contrast"] * max(float(high - low), 1.0)
            sign = -1.0 if is_inverted(volume) else 1.0
            lesion = amplitude * (1.0 + params["texture_rel"] * texture)
            patch = (background + sign * alpha * lesion).astype(np.float32)
            stats = {"mode": "additive", "amplitude": round(amplitude, 3)}
        else:
            patch, stats = blend_mr_lesion(
                volume.pixels, box, alpha, params["contrast"], texture, params["texture_rel"], rng
            )
        pixels, mask, centre = paint_patch(volume, box, alpha, patch, centre)  # type: ignore[arg-type]
        truth = GroundTruth(
            attack=self.name,
            label=self.label,
            params={**params, "matched": stats},
            centre=centre,
            mask=mask,
        )
        return TamperResult(pixels=pixels, truth=truth)
