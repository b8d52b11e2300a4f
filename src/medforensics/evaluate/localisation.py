"""Did the detector point at the tampered region? Hit rate and distance over the top-k findings.

A finding is a hit when its centre is within ``max_px`` pixels (in-plane) and ``max_slices``
slices of the ground-truth centre, or when it falls inside the ground-truth mask if one is
given (a large lesion can be found far from its centre). Distances are in voxel units: a step
of one row, one column or one slice each counts 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medforensics.detect.types import Finding

#: finding kinds that carry a location; ``global``/``metadata``/``signature`` findings do not
SPATIAL_KINDS = ("local",)


@dataclass(frozen=True)
class GroundTruthRegion:
    """Where the tampering is.

    Attributes:
        slice: 0-based slice index of the centre.
        row: pixel row of the centre.
        col: pixel column of the centre.
        mask: optional boolean ``(slices, rows, cols)`` mask of the tampered voxels, in the
            same geometry as the findings.
    """

    slice: int
    row: int
    col: int
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.mask is not None and self.mask.ndim != 3:
            raise ValueError(
                f"the ground-truth mask must be (slices, rows, cols), got shape {self.mask.shape}"
            )


@dataclass(frozen=True)
class LocalisationResult:
    """How well one case was localised.

    Attributes:
        hit: whether any of the top-k spatial findings is a hit.
        hit_rank: 1-based rank (by score) of the first hit among the findings considered, or
            None.
        distance: voxel distance from the ground-truth centre to the nearest finding
            considered; NaN when there was none.
        n_considered: spatial findings looked at (at most ``top_k``).
    """

    hit: bool
    hit_rank: int | None
    distance: float
    n_considered: int


@dataclass(frozen=True)
class LocalisationSummary:
    """Localisation over many cases.

    Attributes:
        n_cases: cases summarised.
        hit_rate: fraction of cases with a hit; NaN with no cases.
        mean_distance: mean of the per-case distances over cases that had a spatial finding;
            NaN when none had.
        n_without_findings: cases with no spatial finding (counted as misses).
    """

    n_cases: int
    hit_rate: float
    mean_distance: float
    n_without_findings: int


def localise(
    findings: Sequence[Finding],
    truth: GroundTruthRegion,
    *,
    top_k: int = 1,
    max_px: float = 16.0,
    max_slices: int = 2,
    kinds: Sequence[str] = SPATIAL_KINDS,
) -> LocalisationResult:
    """Score one case: is any of the ``top_k`` highest-scoring spatial findings a hit?

    Args:
        findings: the detector's findings, any order; they are ranked by score here.
        truth: the ground-truth centre and optional mask.
        top_k: how many of the highest-scoring spatial findings may hit.
        max_px: largest in-plane distance in pixels that still counts as a hit.
        max_slices: largest slice offset that still counts as a hit.
        kinds: finding kinds that carry a location.

    Raises:
        ValueError: when ``top_k < 1`` or a tolerance is negative.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if max_px < 0 or max_slices < 0:
        raise ValueError(f"tolerances must be >= 0, got max_px={max_px}, max_slices={max_slices}")
    spatial = [finding for finding in findings if finding.kind in kinds]
    ranked = sorted(spatial, key=lambda finding: finding.score, reverse=True)[:top_k]
    hit_rank: int | None = None
    distances = []
    for rank, finding in enumerate(ranked, start=1):
        in_plane = math.hypot(finding.row - truth.row, finding.col - truth.col)
        slice_offset = abs(finding.slice - truth.slice)
        distances.append(math.hypot(in_plane, slice_offset))
        near = in_plane <= max_px and slice_offset <= max_slices
        if hit_rank is None and (near or _inside_mask(finding, truth.mask)):
            hit_rank = rank
    return LocalisationResult(
        hit=hit_rank is not None,
        hit_rank=hit_rank,
        distance=min(distances) if distances else math.nan,
        n_considered=len(ranked),
    )


def summarise_localisation(results: Sequence[LocalisationResult]) -> LocalisationSummary:
    """Hit rate and mean distance over cases.

    Args:
        results: one ``LocalisationResult`` per manipulated case.
    """
    distances = [result.distance for result in results if not math.isnan(result.distance)]
    return LocalisationSummary(
        n_cases=len(results),
        hit_rate=sum(result.hit for result in results) / len(results) if results else math.nan,
        mean_distance=float(np.mean(distances)) if distances else math.nan,
        n_without_findings=sum(1 for result in results if result.n_considered == 0),
    )


def _inside_mask(finding: Finding, mask: np.ndarray | None) -> bool:
    if mask is None:
        return False
    index = (finding.slice, finding.row, finding.col)
    if any(not 0 <= value < size for value, size in zip(index, mask.shape, strict=True)):
        return False
    return bool(mask[index])
