"""Localisation hits and distances by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medforensics.detect.types import Finding
from medforensics.evaluate.localisation import (
    GroundTruthRegion,
    localise,
    summarise_localisation,
)

TRUTH = GroundTruthRegion(slice=5, row=100, col=100)
NEAR = Finding(kind="local", score=0.8, slice=5, row=110, col=100)  # 10 px in-plane
FAR = Finding(kind="local", score=0.95, slice=20, row=300, col=300)
WHOLE_IMAGE = Finding(kind="global", score=0.99, slice=0, row=0, col=0)


def test_hit_within_tolerance() -> None:
    result = localise([NEAR], TRUTH, max_px=16, max_slices=2)
    assert result.hit and result.hit_rank == 1
    assert result.distance == pytest.approx(10.0)


def test_top_k_decides_whether_a_lower_ranked_hit_counts() -> None:
    # FAR outranks NEAR (0.95 > 0.8); the global finding carries no location and is skipped.
    findings = [NEAR, WHOLE_IMAGE, FAR]
    top_one = localise(findings, TRUTH, top_k=1)
    assert not top_one.hit and top_one.n_considered == 1
    # distance of FAR: sqrt(200^2 + 200^2 + 15^2) = sqrt(80225)
    assert top_one.distance == pytest.approx(math.sqrt(80225))
    top_two = localise(findings, TRUTH, top_k=2)
    assert top_two.hit and top_two.hit_rank == 2
    assert top_two.distance == pytest.approx(10.0)


def test_slice_tolerance() -> None:
    three_slices_off = Finding(kind="local", score=0.9, slice=8, row=100, col=100)
    assert not localise([three_slices_off], TRUTH, max_slices=2).hit
    assert localise([three_slices_off], TRUTH, max_slices=3).hit
    assert localise([three_slices_off], TRUTH).distance == pytest.approx(3.0)


def test_inside_mask_is_a_hit_even_far_from_the_centre() -> None:
    mask = np.zeros((10, 200, 200), dtype=bool)
    mask[4:7, 120:141, 100:111] = True
    truth = GroundTruthRegion(slice=5, row=100, col=100, mask=mask)
    in_mask = Finding(kind="local", score=0.9, slice=5, row=130, col=105)  # ~30.4 px away
    assert not localise([in_mask], TRUTH, max_px=16).hit
    assert localise([in_mask], truth, max_px=16).hit
    outside_volume = Finding(kind="local", score=0.9, slice=50, row=130, col=105)
    assert not localise([outside_volume], truth).hit


def test_summary_over_cases() -> None:
    results = [
        localise([NEAR], TRUTH),  # hit, distance 10
        localise([Finding(kind="local", score=0.9, slice=5, row=100, col=130)], TRUTH),  # 30
        localise([WHOLE_IMAGE], TRUTH),  # no spatial finding
    ]
    summary = summarise_localisation(results)
    assert summary.n_cases == 3
    assert summary.hit_rate == pytest.approx(1 / 3)
    assert summary.mean_distance == pytest.approx(20.0)  # (10 + 30) / 2
    assert summary.n_without_findings == 1
    assert math.isnan(summarise_localisation([]).hit_rate)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="top_k"):
        localise([NEAR], TRUTH, top_k=0)
    with pytest.raises(ValueError, match="slices, rows, cols"):
        GroundTruthRegion(slice=0, row=0, col=0, mask=np.zeros((4, 4), dtype=bool))
