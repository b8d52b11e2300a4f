"""The patch-cascade baseline: training on phantoms, scoring, JSON persistence, errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from medforensics.detect import create_detector, list_detectors
from medforensics.detect.classical import ModelFileError
from medforensics.detect.patch_cascade import (
    HEATMAP_FEATURES,
    PatchCascadeDetector,
    PatchCascadeModel,
    slice_heatmap_features,
)
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom
from medforensics.tamper.registry import simulate
from medforensics.train.cases import make_cases
from medforensics.train.patch_cascade import train_patch_cascade

SLICES, SIZE = 3, 128
BLUNT = ("copy-move", "splice")


def _volume(seed: int, modality: str = "CT") -> ImageVolume:
    pixels = np.rint(chest_ct_phantom(SLICES, SIZE, np.random.default_rng(seed)))
    return ImageVolume(
        input=f"phantom-{seed}",
        kind="dicom-series",
        modality=modality,
        pixels=pixels.astype(np.float32),
        spacing=(2.0, 0.7, 0.7),
    )


def _blunt_twin(volume: ImageVolume, attack: str, seed: int) -> ImageVolume:
    """A splice without noise matching, or a copy-move: edits the phantom cannot hide."""
    overrides = {"match_noise": False} if attack == "splice" else {}
    result = simulate(volume, attack, seed=seed, **overrides)
    return dataclasses.replace(volume, pixels=np.rint(result.pixels).astype(np.float32))


@pytest.fixture(scope="module")
def model() -> PatchCascadeModel:
    cases = list(make_cases([_volume(s) for s in range(6)], BLUNT, seed=0, chunk=3, per_chunk=2))
    return train_patch_cascade(cases, seed=0, val_every=3, card={"data": "phantoms"})


@pytest.fixture(scope="module")
def detector(model: PatchCascadeModel) -> PatchCascadeDetector:
    return PatchCascadeDetector(model)


def test_registered_and_needs_a_model() -> None:
    assert "patch-cascade" in list_detectors()
    # nothing is shipped: the error must say how to train one
    with pytest.raises(ModelFileError, match="train_patch_cascade"):
        create_detector("patch-cascade")


def test_blunt_edits_score_higher_than_their_authentic_twins(
    detector: PatchCascadeDetector,
) -> None:
    authentic, tampered = [], []
    for seed in range(10, 14):
        volume = _volume(seed)
        authentic.append(detector.detect(volume).score)
        for attack in BLUNT:
            tampered.append(detector.detect(_blunt_twin(volume, attack, seed)).score)
    assert np.mean(tampered) > np.mean(authentic) + 0.2
    assert np.median(tampered) > max(authentic)


def test_detection_has_map_findings_and_verdict(detector: PatchCascadeDetector) -> None:
    volume = _blunt_twin(_volume(21), "splice", 21)
    detection = detector.detect(volume)
    assert detection.detector == "patch-cascade"
    assert 0.0 <= detection.score <= 1.0
    assert detection.verdict in ("authentic", "inconclusive", "manipulated")
    assert detection.anomaly_map is not None and detection.map_stride == 16
    assert detection.anomaly_map.shape == (SLICES, SIZE // 16, SIZE // 16)
    assert detection.findings, "a blunt splice should leave at least one heatmap peak"
    top = detection.findings[0]
    # the strongest finding is on the volume score's scale
    assert top.score == pytest.approx(detection.score, abs=1e-9)
    assert 0 <= top.slice < SLICES and 0 <= top.row < SIZE and 0 <= top.col < SIZE


def test_detector_never_modifies_its_input(detector: PatchCascadeDetector) -> None:
    volume = _blunt_twin(_volume(22), "copy-move", 22)
    before = volume.pixels.copy()
    detector.detect(volume)
    assert np.array_equal(volume.pixels, before)


def test_json_round_trip_gives_identical_scores(
    model: PatchCascadeModel, detector: PatchCascadeDetector, tmp_path: Path
) -> None:
    path = model.save(tmp_path / "pc.json")
    payload = json.loads(path.read_text())
    assert payload["format"] == "medforensics-patch-cascade/1"
    assert payload["heatmap"]["svm"]["kernel"] == "linear"
    reloaded = create_detector("patch-cascade", model=path)
    volumes = (_volume(30), _blunt_twin(_volume(31), "splice", 31))
    for volume in volumes:
        first, second = detector.detect(volume), reloaded.detect(volume)
        assert second.score == first.score
        assert second.verdict == first.verdict
        assert second.findings == first.findings
        assert np.array_equal(second.anomaly_map, first.anomaly_map)  # type: ignore[arg-type]


def test_rbf_svm_round_trips_through_json(tmp_path: Path) -> None:
    cases = list(make_cases([_volume(s) for s in range(6)], BLUNT, seed=0, chunk=3, per_chunk=2))
    rbf = train_patch_cascade(cases, seed=0, kernel="rbf")
    assert rbf.heatmap.support_vectors.shape[0] > 0 and rbf.heatmap.gamma > 0
    reloaded = PatchCascadeDetector(rbf.save(tmp_path / "rbf.json"))
    volume = _blunt_twin(_volume(32), "copy-move", 32)
    assert reloaded.detect(volume).score == PatchCascadeDetector(rbf).detect(volume).score


def test_bad_model_files_are_refused_with_a_reason(
    model: PatchCascadeModel, tmp_path: Path
) -> None:
    with pytest.raises(ModelFileError, match="no patch-cascade model file"):
        PatchCascadeDetector(tmp_path / "missing.json")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ModelFileError, match="cannot be read"):
        PatchCascadeDetector(garbage)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "medforensics-classical/1"}))
    with pytest.raises(ModelFileError, match="not a patch-cascade model"):
        PatchCascadeDetector(other)
    broken = model.to_dict()
    del broken["heatmap"]["svm"]
    truncated = tmp_path / "truncated.json"
    truncated.write_text(json.dumps(broken))
    with pytest.raises(ModelFileError, match="malformed"):
        PatchCascadeDetector(truncated)


def test_other_modalities_and_blank_images_are_not_assessed(
    detector: PatchCascadeDetector,
) -> None:
    mr = detector.detect(_volume(40, modality="MR"))
    assert mr.verdict == "inconclusive" and "CT" in mr.notes[0]
    blank = ImageVolume(
        input="blank", kind="image", modality="CT", pixels=np.full((1, 64, 64), -1000.0)
    )
    answer = detector.detect(blank)
    assert answer.verdict == "inconclusive" and "too small or blank" in answer.notes[0]


def test_heatmap_features_see_a_hot_region() -> None:
    rng = np.random.default_rng(0)
    cool = rng.normal(-3.0, 0.3, (12, 12))
    hot = cool.copy()
    hot[4:7, 4:7] = 4.0
    cool_row, hot_row = slice_heatmap_features(cool), slice_heatmap_features(hot)
    assert cool_row is not None and hot_row is not None
    assert cool_row.shape == (len(HEATMAP_FEATURES),)
    named = dict(zip(HEATMAP_FEATURES, hot_row - cool_row, strict=True))
    assert named["peak"] > 5 and named["area_above_3"] > 0.05
    assert named["largest_region_log"] == pytest.approx(np.log1p(9))
    assert slice_heatmap_features(np.full((4, 4), np.nan)) is None


def test_training_is_reproducible_and_checks_its_cases(model: PatchCascadeModel) -> None:
    cases = list(make_cases([_volume(s) for s in range(6)], BLUNT, seed=0, chunk=3, per_chunk=2))
    again = train_patch_cascade(cases, seed=0, val_every=3, card={"data": "phantoms"})
    assert again.to_dict() == model.to_dict()
    with pytest.raises(ValueError, match="both authentic and tampered"):
        train_patch_cascade([c for c in cases if c.label == 0], seed=0)
