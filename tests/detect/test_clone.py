"""``copy-move``: repeated noise within an image, in any modality, with no training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medforensics.detect.clone import (
    AUTHENTIC_SCORE,
    CONFIRMED_SCORE,
    VOTES_AMID_CHANCE,
    CopyMoveDetector,
    coherent,
)
from medforensics.detect.registry import create_detector
from medforensics.io.types import ImageVolume
from medforensics.samples.phantom import radiograph_phantom


def _radiograph(seed: int = 0, modality: str = "DX") -> ImageVolume:
    pixels = np.rint(radiograph_phantom(size=256, rng=np.random.default_rng(seed)))
    return ImageVolume(input="cxr.png", kind="image", modality=modality, pixels=pixels)


def _mr(seed: int = 0) -> ImageVolume:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:192, :192]
    head = ((yy - 96) / 80.0) ** 2 + ((xx - 96) / 64.0) ** 2 < 1.0
    slices = [np.abs(500.0 * head + rng.normal(0, 25, (192, 192))) for _ in range(3)]
    return ImageVolume(input="t1", kind="dicom-series", modality="MR", pixels=np.rint(slices))


def _clone(volume: ImageVolume, flip: bool = False, shift: float = 0.0) -> ImageVolume:
    pixels = volume.pixels.copy()
    source = pixels[0, 90:130, 70:110].copy()
    if flip:
        source = source[:, ::-1]
    pixels[0, 100:140, 150:190] = source + shift
    return ImageVolume(volume.input, volume.kind, volume.modality, pixels)


@pytest.mark.parametrize("make", [_radiograph, _mr])
def test_authentic_images_have_no_repeated_noise(make) -> None:  # type: ignore[no-untyped-def]
    for seed in range(3):
        result = CopyMoveDetector().detect(make(seed))
        assert result.verdict == "authentic"
        assert result.score == AUTHENTIC_SCORE and not result.findings


@pytest.mark.parametrize("make", [_radiograph, _mr])
@pytest.mark.parametrize(("flip", "shift"), [(False, 0.0), (True, 0.0), (False, 37.0)])
def test_a_cloned_region_is_found_at_source_and_copy(make, flip: bool, shift: float) -> None:  # type: ignore[no-untyped-def]
    volume = _clone(make(1), flip=flip, shift=shift)
    before = volume.pixels.copy()
    result = create_detector("copy-move").detect(volume)
    assert np.array_equal(volume.pixels, before)
    assert result.verdict == "manipulated" and result.score == CONFIRMED_SCORE
    places = {(f.slice, f.row // 10, f.col // 10) for f in result.findings}
    near_source = any(z == 0 and 9 <= r <= 13 and 7 <= c <= 11 for z, r, c in places)
    near_copy = any(z == 0 and 10 <= r <= 14 and 15 <= c <= 19 for z, r, c in places)
    assert near_source and near_copy, result.findings


def test_tiny_images_are_not_assessed() -> None:
    tiny = ImageVolume("x.png", "image", "OT", np.zeros((1, 16, 16), np.float32))
    result = CopyMoveDetector().detect(tiny)
    assert result.verdict == "inconclusive" and "too small" in result.notes[0]


def test_duplicated_slices_are_a_copy_checked_on_a_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    from medforensics.detect import clone

    mr = _mr(seed=4)
    duplicated = ImageVolume(
        mr.input, mr.kind, mr.modality, np.concatenate([mr.pixels, mr.pixels, mr.pixels])
    )
    full = CopyMoveDetector().detect(duplicated)
    assert full.verdict == "manipulated"
    # past MAX_COHERENT repeats only a fixed sample is checked (memory and time stay bounded:
    # a 300-slice series of duplicated slices has millions), and it still confirms the copy
    monkeypatch.setattr(clone, "MAX_COHERENT", 500)
    sampled = CopyMoveDetector().detect(duplicated)
    assert sampled.verdict == "manipulated" and sampled.score == CONFIRMED_SCORE
    assert any("a sample of" in note for note in sampled.notes)
    assert not any("no proof of a copy" in note for note in sampled.notes)
    # one finding per copied region of each slice, not one per keypoint
    assert 0 < len(sampled.findings) <= 6
    assert len({(f.slice, f.row // 32, f.col // 32) for f in sampled.findings}) == len(
        sampled.findings
    )


@dataclasses.dataclass
class _Keypoints:
    positions: np.ndarray
    hashes: np.ndarray
    orientation: np.ndarray
    width: int


def test_where_repeats_are_common_a_copy_needs_more_votes() -> None:
    # one slice, 256 wide: a pair of chance repeats (2 votes, 10 px apart, one displacement)
    # and a copied region (10 keypoints, all under another displacement)
    width = 256
    places = [(100, 100), (100, 110)] + [(40 + 3 * k, 30 + 2 * k) for k in range(10)]
    moved = [(150, 160), (150, 170)] + [(40 + 3 * k, 130 + 2 * k) for k in range(10)]
    rows_cols = np.array(places + moved)
    hashes = np.arange(1, len(places) + 1, dtype=np.int64)
    measured = [
        _Keypoints(
            positions=(rows_cols[:, 0] * width + rows_cols[:, 1]).astype(np.int64),
            hashes=np.concatenate([hashes, hashes]),
            orientation=np.zeros(len(rows_cols), np.int8),
            width=width,
        )
    ]
    found = [measured[0].positions.copy()]
    kept, votes = coherent(measured, found)
    assert votes == [10, 2] and len(kept[0]) == 24
    kept, votes = coherent(measured, found, min_votes=VOTES_AMID_CHANCE)
    assert votes == [10] and len(kept[0]) == 20
    assert set(kept[0].tolist()) == set(found[0][2:12].tolist()) | set(found[0][14:].tolist())


def test_a_small_copy_is_not_believed_amid_chance_repeats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from medforensics.detect import copy_move

    volume = _radiograph(1)
    pixels = volume.pixels.copy()
    pixels[0, 100:108, 150:158] = pixels[0, 90:98, 70:78]
    small = ImageVolume(volume.input, volume.kind, volume.modality, pixels)
    large = _clone(volume)
    assert CopyMoveDetector().detect(small).verdict == "manipulated"
    # an image whose residual patterns repeat by chance (smoothed, denoised): 2 % of them
    monkeypatch.setattr(copy_move.KeypointTable, "chance_repeats", lambda self, copied: 0.02)
    assert CopyMoveDetector().detect(small).verdict == "authentic"
    assert CopyMoveDetector().detect(large).verdict == "manipulated"
