"""One attack, consistently, on every MR series of one study.

A reader looks at an MR study as a set: a lesion that is bright on T2 and FLAIR but absent from
T1 at the same place, or a region erased in one sequence only, gives a forgery away at once.
``simulate_study`` therefore places the edit once, in patient coordinates (mm), and maps it into
each series' own voxel grid (``geometry.VoxelGrid``), so it sits at the same anatomical place in
every sequence even when matrices, slice thickness and orientation differ.

* ``inject``: one lesion shape in mm (the same lobes and spicules in every series, each series
  averaging it over its own slice thickness); its intensity is chosen per series from the
  series' own tissue statistics and a guess of the sequence (``sequence.guess_sequence``; T2,
  FLAIR, PD and post-contrast T1: hyperintense; T1: hypo- or isointense; unknown: one sign drawn
  for the whole study), with the series' own noise.
* ``remove`` / ``inpaint``: one ball (centre and radius in mm) erased in every series.
* ``copy-move`` / ``splice``: one target ball and the same displacement in mm in every series
  (a translation: flips would be different operations in differently oriented series).

Everything else (method, feathering, ...) is drawn once for the study; sizes in pixels are
scaled to each series' pixel size. Laundering is drawn and applied per series.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from medforensics.io.types import ImageVolume
from medforensics.tamper.anatomy import foreground_mask, plausible_mask
from medforensics.tamper.base import AttackError, GroundTruth, Params, TamperResult
from medforensics.tamper.geometry import VoxelGrid, study_grids
from medforensics.tamper.inject import (
    LesionInjection,
    blend_mr_lesion,
    lesion_opacity,
    lesion_reach_mm,
    lesion_texture,
    paint_patch,
    sub_slice_offsets,
    tissue_statistics,
)
from medforensics.tamper.registry import create_attack, seed_streams
from medforensics.tamper.sequence import SEQUENCES, guess_sequence, header_values

#: attacks that have a study-wide form
STUDY_ATTACKS = ("inject", "remove", "inpaint", "copy-move", "splice")
#: sequences on which a lesion is bright: oedema, demyelination and most tumours on T2, FLAIR
#: and PD; an enhancing lesion on T1 after contrast (T1C)
HYPERINTENSE = ("T2", "FLAIR", "PD", "T1C")


@dataclass(frozen=True)
class StudySeries:
    """One series of the study and what the simulator knows about it.

    Attributes:
        volume: the authentic series.
        grid: its voxel grid in the study's frame.
        header: the values of ``HEADER_KEYS`` that were found.
        sequence: one of ``SEQUENCES``.
        sequence_reason: what the guess rests on, for the ground truth.
        index: the series' position in the caller's list.
    """

    volume: ImageVolume
    grid: VoxelGrid
    header: dict[str, str]
    sequence: str
    sequence_reason: str
    index: int = 0


def series_label(volume: ImageVolume) -> str:
    """A name for one series that tells it from its siblings: its folder and description.

    The input path alone does not: every series of a study folder shares it.
    """
    where = str(volume.source_files[0].parent) if volume.slices else volume.input
    description = volume.attributes.get("SeriesDescription")
    if description:
        return f"{where} ({description!r})"
    return f"{where} (series {volume.series_uid})" if volume.series_uid else where


def describe_study(
    volumes: Sequence[ImageVolume],
    sequences: Sequence[str] | None = None,
    indices: Sequence[int] | None = None,
) -> list[StudySeries]:
    """Check that ``volumes`` are MR series of one study and describe each.

    Args:
        volumes: the series.
        sequences: optional sequence per series (one of ``SEQUENCES``), replacing the guesses.
        indices: the series' positions in the caller's list (default 0, 1, ...).

    Raises:
        AttackError: not MR, not one study (StudyInstanceUID or FrameOfReferenceUID differ),
            or ``sequences`` does not fit; the message names the inputs.
    """
    if not volumes:
        raise AttackError("a study attack needs at least one MR series; none was given")
    odd = [f"{series_label(v)}: {v.modality}" for v in volumes if v.modality != "MR"]
    if odd:
        raise AttackError(
            f"study attacks work on MR series; not MR: {', '.join(odd)}. "
            "Tamper other modalities one series at a time (simulate)"
        )
    headers = [header_values(v) for v in volumes]
    _check_same(volumes, [v.study_uid for v in volumes], "StudyInstanceUID", allow_missing=False)
    frames = [h.get("FrameOfReferenceUID") for h in headers]
    _check_same(volumes, frames, "FrameOfReferenceUID", allow_missing=True)
    if sequences is not None:
        sequences = list(sequences)
        if len(sequences) != len(volumes) or any(s not in SEQUENCES for s in sequences):
            raise AttackError(
                f"sequences {sequences} must give one of {', '.join(SEQUENCES)} for each of the "
                f"{len(volumes)} series"
            )
    grids, _ = study_grids(volumes)
    described = []
    for k, (volume, grid, header) in enumerate(zip(volumes, grids, headers, strict=True)):
        sequence, reason = (
            (sequences[k], "given") if sequences is not None else guess_sequence(header)
        )
        index = k if indices is None else int(indices[k])
        described.append(StudySeries(volume, grid, header, sequence, reason, index))
    return described


def _check_same(
    volumes: Sequence[ImageVolume], uids: list[str | None], what: str, allow_missing: bool
) -> None:
    known = {uid for uid in uids if uid}
    if len(known) <= 1 and (allow_missing or len(known) == 0 or all(uids)):
        return
    listing = "; ".join(
        f"{series_label(v)}: {what} {uid or 'missing'}"
        for v, uid in zip(volumes, uids, strict=True)
    )
    raise AttackError(
        f"these series are not one study: {listing}. A study attack needs series that share "
        "StudyInstanceUID and FrameOfReferenceUID (one patient position); tamper each study "
        "on its own"
    )


def simulate_study(
    volumes: Sequence[ImageVolume],
    attack: str,
    seed: int | Sequence[int],
    *,
    launder: Sequence[str] = (),
    donors: Sequence[ImageVolume] | None = None,
    **overrides: Any,
) -> list[TamperResult]:
    """Run ``attack`` on every series of one MR study, at one place in patient space.

    Args:
        volumes: MR series of one study (same StudyInstanceUID and FrameOfReferenceUID).
        attack: one of ``STUDY_ATTACKS``.
        seed: integer seed, or a sequence of integers; the same seed gives the same results.
        launder: laundering operations applied to every series afterwards, drawn per series.
        donors: for ``splice``, one donor series per input series (another study's matching
            sequences, in the same order); without them a phantom is the donor.
        **overrides: study parameters (``centre_mm``, ``diameter_mm``, ``radius_mm``,
            ``displacement_mm``, ``t1_appearance``, ``sequences``, ``reference_series``...) or
            the attack's own parameters (``nodule_type``, ``method``...), replacing the drawn ones.

    Returns:
        One result per input series, in order. Each ``truth.params["study"]`` holds the common
        centre (mm), size and displacement, the frame (``patient`` or ``voxel-index``) and the
        sequence guess; ``truth.mask`` is in that series' own grid.
    """
    if attack not in STUDY_ATTACKS:
        raise AttackError(
            f"attack {attack!r} has no study-wide form; study attacks: "
            f"{', '.join(STUDY_ATTACKS)}. Run simulate() on each series for it"
        )
    if donors is not None and len(donors) != len(volumes):
        raise AttackError(f"give one donor per series: {len(donors)} donors, {len(volumes)} series")
    # the same seed gives the same study whatever order the series were found in
    order = sorted(
        range(len(volumes)), key=lambda i: (volumes[i].series_uid or "", volumes[i].input)
    )
    overrides = dict(overrides)
    sequences = overrides.pop("sequences", None)
    if sequences is not None and len(sequences) == len(volumes):
        sequences = [sequences[i] for i in order]
    series = describe_study([volumes[i] for i in order], sequences, indices=order)
    given_ref = overrides.pop("reference_series", None)
    if given_ref is not None and int(given_ref) not in order:
        raise AttackError(f"reference_series {given_ref} is not one of the {len(series)} series")
    ref = _finest(series) if given_ref is None else order.index(int(given_ref))
    if donors is not None:
        donors = [donors[i] for i in order]
    entropy = [int(seed)] if isinstance(seed, int | np.integer) else [int(s) for s in seed]
    params_rng = seed_streams(entropy)[0]
    common = _study_block(series, ref)
    plan = _PLANNERS[attack](series, ref, params_rng, overrides, common, donors)
    results: dict[int, TamperResult] = {}
    for item, apply_one in zip(series, plan, strict=True):
        _, apply_rng, launder_rng = seed_streams([*entropy, order.index(item.index) + 1])
        result = apply_one(apply_rng)
        if not result.truth.mask.any():
            raise AttackError(
                f"{series_label(item.volume)}: the {attack} region misses every voxel of it"
            )
        if launder:
            from medforensics.tamper.launder import launder_result

            result = launder_result(result, item.volume, list(launder), launder_rng)
        results[item.index] = result
    return [results[i] for i in range(len(volumes))]


def _finest(series: Sequence[StudySeries]) -> int:
    volumes = [float(np.prod(s.grid.spacing)) for s in series]
    return int(np.argmin(volumes))


def _study_block(series: Sequence[StudySeries], ref: int) -> Params:
    frame = series[0].grid.frame
    block: Params = {
        "study_uid": series[0].volume.study_uid,
        "frame_of_reference_uid": series[ref].header.get("FrameOfReferenceUID"),
        "geometry": frame,
        "series_count": len(series),
        "reference_series": series[ref].index,
    }
    if frame == "voxel-index":
        missing = [series_label(s.volume) for s in series if s.volume.positions is None]
        block["geometry_note"] = (
            "no ImagePositionPatient/ImageOrientationPatient for "
            f"{', '.join(missing) or 'some series'}: positions are voxel index times spacing, "
            "fields of view aligned at their first voxel, orientation assumed identical"
        )
    return block


def _series_block(common: Params, item: StudySeries) -> Params:
    return {
        **common,
        "series_index": item.index,
        "series_uid": item.volume.series_uid,
        "input": item.volume.input,
        "series": series_label(item.volume),
        "sequence": item.sequence,
        "sequence_from": item.sequence_reason,
    }


#: an attack's study form: (series, reference, params generator, overrides, study block,
#: donors) -> one function per series that applies the edit with that series' generator
Planner = Callable[
    [
        Sequence[StudySeries],
        int,
        np.random.Generator,
        dict[str, Any],
        Params,
        Sequence[ImageVolume] | None,
    ],
    list[Callable[[np.random.Generator], TamperResult]],
]

# ---------------------------------------------------------------- placement in patient space


def _sample_site(
    series: Sequence[StudySeries],
    ref: int,
    rng: np.random.Generator,
    reach_mm: float,
    away_from: np.ndarray | None = None,
    min_distance_mm: float = 0.0,
    tries: int = 12,
) -> tuple[np.ndarray, str]:
    """A point (mm) in the anatomy of every series, ``reach_mm`` inside every field of view.

    Candidates come from the reference series: a random slice, the pixels of its foreground
    at least ``reach_mm`` from the edge whose position every other series covers; a candidate
    is kept when it falls in the foreground of every series.
    """
    volume, grid = series[ref].volume, series[ref].grid
    n, rows, cols = volume.shape
    lo, hi = (n // 10, n - n // 10) if n >= 10 else (0, n)
    yy, xx = np.mgrid[:rows, :cols]
    for placement, scale, anatomical in (
        ("anatomy", 1.0, True),
        ("anatomy-tight", 0.5, True),
        ("field-of-view", 0.5, False),
    ):
        need_px = max(reach_mm * scale / float(np.mean(grid.spacing[1:])), 1.0)
        for _ in range(tries):
            z = int(rng.integers(lo, hi))
            points = grid.to_mm(np.stack([np.full_like(yy, z), yy, xx], axis=-1))
            allowed = np.ones((rows, cols), dtype=bool)
            for item in series:
                allowed &= item.grid.covers(points, reach_mm)
            if away_from is not None:
                allowed &= np.linalg.norm(points - away_from, axis=-1) >= min_distance_mm
            if anatomical:
                body = plausible_mask(volume, z)
                inside = cv2.distanceTransform(body.astype(np.uint8), cv2.DIST_L2, 5)
                allowed &= inside >= need_px
            ys, xs = np.nonzero(allowed)
            if not len(ys):
                continue
            pick = int(rng.integers(len(ys)))
            point = points[ys[pick], xs[pick]]
            if anatomical and not all(_in_foreground(item, point) for item in series):
                continue
            return point, placement
    extents = "; ".join(_extent(item) for item in series)
    raise AttackError(
        f"no place lies inside every series with room for a {2 * reach_mm:.0f} mm region: "
        f"{extents}. The series may not overlap; tamper them one at a time instead"
    )


def _in_foreground(item: StudySeries, point: np.ndarray) -> bool:
    z, y, x = item.grid.nearest_voxel(point)
    return bool(foreground_mask(item.volume.pixels[z])[y, x])


def _extent(item: StudySeries) -> str:
    corners = item.grid.to_mm(np.array([[0, 0, 0], np.asarray(item.grid.shape) - 1]))
    low, high = corners.min(axis=0), corners.max(axis=0)
    span = ", ".join(f"{a:.0f}..{b:.0f}" for a, b in zip(low, high, strict=True))
    return f"{series_label(item.volume)} spans {span} mm"


def _centre_mm(
    series: Sequence[StudySeries],
    ref: int,
    rng: np.random.Generator,
    overrides: Mapping[str, Any],
    reach_mm: float,
) -> tuple[np.ndarray, str]:
    if "centre_mm" in overrides:
        point = np.asarray(overrides["centre_mm"], dtype=np.float64)
        for item in series:
            if not item.grid.covers(point):
                raise AttackError(f"centre_mm {list(point)} lies outside a series: {_extent(item)}")
        return point, "given"
    return _sample_site(series, ref, rng, reach_mm)


def _rounded(point: np.ndarray) -> list[float]:
    return [round(float(v), 2) for v in point]


# ---------------------------------------------------------------- inject


def lesion_contrast(sequence: str, lesion: Params) -> tuple[float, str]:
    """The lesion's contrast (in tissue spreads) on one sequence, and its name."""
    if sequence in HYPERINTENSE:
        return float(lesion["magnitude"]), "hyperintense"
    if sequence == "T1":
        if lesion["t1_appearance"] == "iso":
            return float(lesion["t1_iso_contrast"]), "isointense"
        return -float(lesion["t1_magnitude"]), "hypointense"
    contrast = float(lesion["unknown_sign"]) * float(lesion["magnitude"])
    return contrast, "hyperintense" if contrast > 0 else "hypointense"


def site_tissue(volume: ImageVolume, box: tuple[slice, slice, slice]) -> tuple[float, float]:
    """Median and spread of the foreground around ``box`` on its middle slice."""
    z = (box[0].start + box[0].stop - 1) // 2
    plane = volume.pixels[z]
    grow = max(box[1].stop - box[1].start, box[2].stop - box[2].start)
    window = (
        slice(max(box[1].start - grow, 0), box[1].stop + grow),
        slice(max(box[2].start - grow, 0), box[2].stop + grow),
    )
    values = plane[window][foreground_mask(plane)[window]]
    if values.size < 32:
        values = volume.pixels[box].ravel()
    return tissue_statistics(values)


def _plan_inject(
    series: Sequence[StudySeries],
    ref: int,
    rng: np.random.Generator,
    overrides: dict[str, Any],
    common: Params,
    donors: Sequence[ImageVolume] | None,
) -> list[Callable[[np.random.Generator], TamperResult]]:
    base = LesionInjection().sample_params(series[ref].volume, rng)
    lesion: Params = {
        key: value for key, value in base.items() if key not in ("centre", "placement", "contrast")
    }
    lesion.update(
        magnitude=abs(float(base["contrast"])),
        unknown_sign=1 if base["contrast"] > 0 else -1,
        t1_appearance="hypo" if rng.random() < 0.7 else "iso",
        t1_magnitude=round(float(rng.uniform(0.5, 1.5)), 3),
        t1_iso_contrast=round(float(rng.uniform(-0.25, 0.0)), 3),
    )
    lesion.update({k: v for k, v in overrides.items() if k != "centre_mm"})
    centre_mm, placement = _centre_mm(
        series, ref, rng, overrides, 0.6 * float(lesion["diameter_mm"])
    )
    frame_axes = series[ref].grid.axes  # the lesion's own axes: the reference's
    study = {**common, "centre_mm": _rounded(centre_mm), "diameter_mm": lesion["diameter_mm"]}
    study["placement"] = placement

    def one(k: int) -> Callable[[np.random.Generator], TamperResult]:
        return lambda apply_rng: _inject_series(
            series[k], lesion, centre_mm, frame_axes, _series_block(study, series[k]), apply_rng
        )

    return [one(k) for k in range(len(series))]


def _inject_series(
    item: StudySeries,
    lesion: Params,
    centre_mm: np.ndarray,
    frame_axes: np.ndarray,
    study: Params,
    rng: np.random.Generator,
) -> TamperResult:
    volume, grid = item.volume, item.grid
    box = grid.box_around(centre_mm, lesion_reach_mm(lesion))
    if any(b.stop <= b.start for b in box):
        raise AttackError(
            f"{series_label(volume)}: the lesion at {_rounded(centre_mm)} mm is outside it"
        )
    offsets = grid.voxel_mm(box) - centre_mm
    offset_sets = []
    for shift in sub_slice_offsets(grid.thickness_mm, planar=False):
        local = (offsets + shift * grid.axes[0]) @ frame_axes.T
        offset_sets.append((local[..., 0], local[..., 1], local[..., 2]))
    alpha, _ = lesion_opacity(offset_sets, lesion, planar=False)
    if not (alpha > 0).any():
        raise AttackError(
            f"{series_label(volume)}: the {lesion['diameter_mm']} mm lesion falls between its "
            f"slices ({grid.thickness_mm:g} mm thick); choose a larger diameter_mm"
        )
    spacing = grid.spacing
    texture = lesion_texture(
        alpha.shape, int(lesion["shape_seed"]), (0.01, 1.0 / spacing[1], 1.0 / spacing[2])
    )
    contrast, appearance = lesion_contrast(item.sequence, lesion)
    tissue = site_tissue(volume, box)
    try:
        patch, stats = blend_mr_lesion(
            volume.pixels, box, alpha, contrast, texture, float(lesion["texture_rel"]), rng, tissue
        )
    except ValueError as exc:  # e.g. no noise-only pixels to learn the noise from
        raise AttackError(f"{series_label(volume)}: {exc}") from exc
    centre = grid.nearest_voxel(centre_mm)
    pixels, mask, centre = paint_patch(volume, box, alpha, patch, centre)
    params = {
        **lesion,
        "centre": list(centre),
        "contrast": round(contrast, 3),
        "appearance": appearance,
        "matched": {
            **stats,
            "tissue_median": round(tissue[0], 2),
            "tissue_spread": round(tissue[1], 2),
        },
        "study": study,
    }
    truth = GroundTruth("inject", "FM", params, centre, mask)
    return TamperResult(pixels=pixels, truth=truth)


# ---------------------------------------------------------------- region attacks

#: parameters in pixels that are drawn once and scaled to each series' pixel size
_PIXEL_KEYS = ("margin_px", "feather_px", "smoothing_px", "inpaint_radius")


def _radius_mm(base: Params, grid: VoxelGrid) -> float:
    if "radius_px" in base:
        return float(np.mean(np.asarray(base["radius_px"]) * grid.spacing[1:]))
    _, _, y0, y1, x0, x1 = base["box"]
    return float(np.mean([(y1 - y0) / 2 * grid.spacing[1], (x1 - x0) / 2 * grid.spacing[2]]))


def _scaled(base: Params, factor: float) -> Params:
    out = dict(base)
    for key in _PIXEL_KEYS:
        if key in out:
            value = out[key]
            if isinstance(value, int):
                out[key] = max(round(value * factor), 1 if value >= 1 else 0)
            else:
                out[key] = round(float(value) * factor, 2)
    return out


def _region_params(
    item: StudySeries, base: Params, ref_grid: VoxelGrid, centre: np.ndarray, radius_mm: float
) -> Params:
    grid = item.grid
    spacing = grid.spacing
    params = _scaled(base, float(np.mean(ref_grid.spacing[1:]) / np.mean(spacing[1:])))
    z, y, x = grid.nearest_voxel(centre)
    half_z = min(int(radius_mm / spacing[0]), (grid.shape[0] - 1) // 2)
    params.update(
        centre=[z, y, x],
        radius_px=[round(radius_mm / spacing[1], 2), round(radius_mm / spacing[2], 2)],
        slices=2 * half_z + 1,
    )
    if "box" in base:  # removal: the box around the ball
        ry, rx = (math.ceil(radius_mm / s) for s in spacing[1:])
        params.pop("radius_px")
        params.pop("slices")
        params["box"] = [
            max(z - half_z, 0),
            min(z + half_z + 1, grid.shape[0]),
            max(y - ry, 0),
            min(y + ry + 1, grid.shape[1]),
            max(x - rx, 0),
            min(x + rx + 1, grid.shape[2]),
        ]
        params["source"] = "study"
    return params


def _plan_region(
    attack: str,
) -> Planner:
    def plan(
        series: Sequence[StudySeries],
        ref: int,
        rng: np.random.Generator,
        overrides: dict[str, Any],
        common: Params,
        donors: Sequence[ImageVolume] | None,
    ) -> list[Callable[[np.random.Generator], TamperResult]]:
        ref_item = series[ref]
        options = {"donor": donors[ref]} if attack == "splice" and donors is not None else {}
        base = create_attack(attack, **options).sample_params(ref_item.volume, rng)
        study_keys = ("centre_mm", "radius_mm", "displacement_mm")
        base.update({k: v for k, v in overrides.items() if k not in study_keys})
        radius = float(overrides.get("radius_mm", _radius_mm(base, ref_item.grid)))
        radius = _fit_radius(series, radius)
        centre, placement = _centre_mm(series, ref, rng, overrides, radius)
        study: Params = {
            **common,
            "centre_mm": _rounded(centre),
            "radius_mm": round(radius, 2),
            "placement": placement,
        }
        source: np.ndarray | None = None
        if attack == "copy-move":
            source = _source_mm(series, ref, rng, overrides, centre, radius)
            study["displacement_mm"] = _rounded(source - centre)
            base["flip"] = overrides.get("flip", "none")
            base["turn"] = bool(overrides.get("turn", False))
        donor_points = _donor_points(series, ref, base, donors) if attack == "splice" else None

        def one(k: int) -> Callable[[np.random.Generator], TamperResult]:
            item = series[k]
            params = _region_params(item, base, ref_item.grid, centre, radius)
            if source is not None:
                params["source"] = list(item.grid.nearest_voxel(source))
                shift = np.asarray(params["source"]) - np.asarray(params["centre"])
                params["displacement_mm"] = _rounded(shift @ item.grid.steps)
            if donor_points is not None:
                params["donor_centre"] = donor_points[k]
            block = _series_block(study, item)
            donor = {"donor": donors[k]} if donors is not None and attack == "splice" else {}
            attacker = create_attack(attack, **donor)

            def apply(apply_rng: np.random.Generator) -> TamperResult:
                try:
                    result = attacker.apply(item.volume, params, apply_rng)
                except ValueError as exc:
                    raise AttackError(f"{series_label(item.volume)}: {exc}") from exc
                return TamperResult(result.pixels, result.truth.with_params(study=block))

            return apply

        return [one(k) for k in range(len(series))]

    return plan


def _fit_radius(series: Sequence[StudySeries], radius_mm: float) -> float:
    """Keep the region well inside the smallest image and at least two pixels in the coarsest."""
    largest = min(min(np.asarray(s.grid.shape[1:]) * s.grid.spacing[1:]) / 5.0 for s in series)
    smallest = max(2.0 * float(max(s.grid.spacing[1:])) for s in series)
    return float(min(max(radius_mm, smallest), max(largest, smallest)))


def _source_mm(
    series: Sequence[StudySeries],
    ref: int,
    rng: np.random.Generator,
    overrides: Mapping[str, Any],
    target: np.ndarray,
    radius_mm: float,
) -> np.ndarray:
    """Where a copy-move region comes from: ``displacement_mm`` away, or a separate site."""
    if "displacement_mm" in overrides:
        source = target + np.asarray(overrides["displacement_mm"], dtype=np.float64)
        for item in series:
            if not item.grid.covers(source, radius_mm):
                raise AttackError(
                    f"the copy-move source {_rounded(source)} mm is too near the edge of a "
                    f"series: {_extent(item)}"
                )
        return source
    coarsest = max(float(max(s.grid.spacing)) for s in series)
    point, _ = _sample_site(
        series, ref, rng, radius_mm, away_from=target, min_distance_mm=2 * radius_mm + coarsest
    )
    return point


def _donor_points(
    series: Sequence[StudySeries],
    ref: int,
    base: Params,
    donors: Sequence[ImageVolume] | None,
) -> list[list[int]]:
    """The donor region's centre in each donor: one place in the donor study, or the phantom."""
    if donors is None:  # every series' phantom donor is the same phantom (fewer slices for 2D)
        z, y, x = (int(v) for v in base["donor_centre"])
        return [[min(z, max(min(s.volume.shape[0], 6) - 1, 0)), y, x] for s in series]
    grids, _ = study_grids(donors)
    point = grids[ref].to_mm(np.asarray(base["donor_centre"], dtype=np.float64))
    return [list(grid.nearest_voxel(point)) for grid in grids]


_PLANNERS: dict[str, Planner] = {
    "inject": _plan_inject,
    **{name: _plan_region(name) for name in STUDY_ATTACKS if name != "inject"},
}

__all__ = [
    "HYPERINTENSE",
    "STUDY_ATTACKS",
    "StudySeries",
    "describe_study",
    "lesion_contrast",
    "series_label",
    "simulate_study",
    "site_tissue",
]
