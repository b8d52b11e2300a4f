"""The classical baseline detector: training on phantoms, scoring, persistence, errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from medforensics.detect import classical as classical_module
from medforensics.detect import create_detector, list_detectors
from medforensics.detect.classical import (
    ClassicalDetector,
    ClassicalModel,
    ModelFileError,
    train_classical,
)
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom
from medforensics.train.cases import TrainCase

SLICES, SIZE = 3, 128


def _volume(pixels: np.ndarray, modality: str = "CT") -> ImageVolume:
    return ImageVolume(input="phantom", kind="dicom-series", modality=modality, pixels=pixels)


def _authentic(seed: int, slices: int = SLICES) -> np.ndarray:
    return np.rint(chest_ct_phantom(slices, SIZE, np.random.default_rng(seed)))


def _smoothed(pixels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A noise-free (smoothed) 24-40 px block somewhere in the middle of the body."""
    rng = np.random.default_rng(seed)
    size = int(rng.integers(24, 41))
    top, left = (int(v) for v in rng.integers(40, SIZE - 40 - size // 2, size=2))
    mask = np.zeros(pixels.shape, dtype=bool)
    mask[:, top : top + size, left : left + size] = True
    out = pixels.copy()
    region = (slice(None), slice(top, top + size), slice(left, left + size))
    out[region] = np.rint(ndimage.gaussian_filter(pixels[region], (0, 2.5, 2.5)))
    return out, mask


def _cases(seeds: range) -> list[TrainCase]:
    cases = []
    for seed in seeds:
        pixels = _authentic(seed)
        cases.append(TrainCase(_volume(pixels), None, None, f"p{seed}", "phantom"))
        tampered, mask = _smoothed(pixels, seed + 1000)
        cases.append(TrainCase(_volume(tampered), mask, "smooth", f"p{seed}", "phantom"))
    return cases


@pytest.fixture(scope="module")
def model() -> ClassicalModel:
    return train_classical(_cases(range(0, 6)), _cases(range(6, 10)), seed=0, card={"data": "t"})


@pytest.fixture(scope="module")
def detector(model: ClassicalModel) -> ClassicalDetector:
    return ClassicalDetector(model)


def test_tampered_phantoms_score_higher_than_authentic(detector: ClassicalDetector) -> None:
    authentic, tampered = [], []
    for case in _cases(range(20, 26)):
        score = detector.detect(case.volume).score
        (tampered if case.label else authentic).append(score)
    assert np.mean(tampered) > np.mean(authentic) + 0.2
    assert min(tampered) > np.median(authentic)


def test_detection_has_a_map_findings_and_a_verdict(detector: ClassicalDetector) -> None:
    pixels, mask = _smoothed(_authentic(31), 7)
    detection = detector.detect(_volume(pixels))
    assert detection.detector == "classical"
    assert 0.0 <= detection.score <= 1.0
    assert detection.verdict in ("authentic", "manipulated", "inconclusive")
    assert detection.anomaly_map is not None
    assert detection.map_stride == 16
    assert detection.anomaly_map.shape == (SLICES, SIZE // 16, SIZE // 16)
    assert detection.anomaly_map.min() >= 0.0 and detection.anomaly_map.max() <= 1.0
    assert detection.findings, detection.notes
    top = detection.findings[0]
    # the map is on the findings' (and the score's) scale: its brightest cell is the top finding
    assert detection.anomaly_map.max() == pytest.approx(top.score, rel=1e-5)
    assert top.kind == "local"
    rows, cols = np.nonzero(mask[top.slice])
    assert rows.min() - 16 <= top.row <= rows.max() + 16
    assert cols.min() - 16 <= top.col <= cols.max() + 16
    assert top.detail
    assert [f.score for f in detection.findings] == sorted(
        (f.score for f in detection.findings), reverse=True
    )


def test_save_and_load_give_identical_scores(
    model: ClassicalModel, detector: ClassicalDetector, tmp_path: Path
) -> None:
    path = model.save(tmp_path / "classical.json")
    payload = json.loads(path.read_text())
    assert payload["format"] == "medforensics-classical/1"
    assert payload["card"]["data"] == "t"
    assert {"weights", "bias"} <= payload["layers"][0].keys()
    assert {"calibration", "operating_point", "scaler"} <= payload.keys()
    reloaded = ClassicalDetector(path)
    for case in _cases(range(40, 42)):
        assert reloaded.detect(case.volume).score == detector.detect(case.volume).score
    assert reloaded.model.operating_point == model.operating_point
    assert create_detector("classical", model=path).describe()["data"] == "t"


def test_registered_by_name() -> None:
    assert "classical" in list_detectors()


def test_detect_does_not_modify_the_volume(detector: ClassicalDetector) -> None:
    volume = _volume(_smoothed(_authentic(50), 3)[0])
    before = volume.pixels.copy()
    detector.detect(volume)
    np.testing.assert_array_equal(volume.pixels, before)


def test_single_2d_slice_is_scored(detector: ClassicalDetector) -> None:
    detection = detector.detect(_volume(_authentic(60, slices=1)))
    assert detection.anomaly_map is not None
    assert detection.anomaly_map.shape == (1, SIZE // 16, SIZE // 16)
    assert 0.0 <= detection.score <= 1.0
    assert all(f.slice == 0 for f in detection.findings)


def test_blank_image_is_inconclusive(detector: ClassicalDetector) -> None:
    detection = detector.detect(_volume(np.full((1, 64, 64), -1000.0, np.float32)))
    assert detection.verdict == "inconclusive"
    assert "too small or blank" in detection.notes[0]


def test_other_modality_is_inconclusive(detector: ClassicalDetector) -> None:
    detection = detector.detect(_volume(_authentic(61, slices=1) + 1000, modality="MR"))
    assert detection.verdict == "inconclusive"
    assert "trained on CT" in detection.notes[0]


def test_missing_model_file_says_how_to_train_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "classical.json"
    with pytest.raises(ModelFileError, match="medforensics train --model classical") as info:
        ClassicalDetector(missing)
    assert str(missing) in str(info.value)
    monkeypatch.setattr(classical_module, "default_model_path", lambda: missing)
    with pytest.raises(ModelFileError, match="medforensics train --model classical"):
        create_detector("classical")


def test_foreign_or_stale_model_files_are_refused(model: ClassicalModel, tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"calibration": {"a": 1, "b": 0}}))
    with pytest.raises(ModelFileError, match="not a classical model file"):
        ClassicalDetector(other)
    for key, value in (("feature_names", model.feature_names[:-1]), ("features_version", 0)):
        stale = {**model.to_dict(), key: value}
        path = tmp_path / "stale.json"
        path.write_text(json.dumps(stale, default=list))
        with pytest.raises(ModelFileError, match="retrain"):
            ClassicalDetector(path)


def test_training_needs_both_labels() -> None:
    authentic_only = [c for c in _cases(range(2)) if c.label == 0]
    with pytest.raises(ValueError, match="both authentic and tampered"):
        train_classical(authentic_only, _cases(range(2, 4)), seed=0)


def test_training_is_reproducible(model: ClassicalModel) -> None:
    again = train_classical(_cases(range(0, 6)), _cases(range(6, 10)), seed=0, card={"data": "t"})
    np.testing.assert_array_equal(again.layers[0][0], model.layers[0][0])
    assert again.calibration == model.calibration


def test_statistic_is_referred_to_the_reference_size(model: ClassicalModel) -> None:
    logits = np.full((1, 40, 40), -3.0)
    logits[0, 0, :3] = 2.0
    small = model.statistic(logits[:, :10])
    large = model.statistic(logits)
    # same top-3 evidence, more tiles: the larger image must need more to look as suspicious
    assert large < small
    assert np.isnan(model.statistic(logits[:, :1, :5]))


def test_model_card_carries_training_and_validation(model: ClassicalModel) -> None:
    assert model.card["training_cases"] == {"authentic": 6, "smooth": 6}
    assert model.card["validation"]["authentic_cases"] == 4
    assert model.card["training_tiles"]["positive"] > 0
    assert dataclasses.asdict(model.grid) == {"tile": 32, "stride": 16, "min_coverage": 0.75}


def _series_with_copies() -> np.ndarray:
    """40 slices of 256x256 with a copy across slices, a flipped copy and a repeated slice."""
    pixels = np.rint(chest_ct_phantom(40, 256, np.random.default_rng(70)))
    tampered = pixels.copy()
    tampered[17, 80:120, 150:190] = pixels[3, 80:120, 100:140]
    tampered[25, 100:140, 60:100] = pixels[25, 60:100, 60:100][:, ::-1] + 7
    tampered[33] = pixels[9]
    return tampered


def test_streaming_in_chunks_scores_like_the_whole_volume(model: ClassicalModel) -> None:
    volume = _volume(_series_with_copies())
    # the reference: the whole volume in one chunk (what the detector did before streaming)
    whole = volume.shape[0]
    reference_features = model.features(volume, chunk_slices=whole)
    reference = ClassicalDetector(model, chunk_slices=whole).detect(volume)
    copied = reference_features.values[..., model.feature_names.index("duplicated_keypoints")]
    # the copy from slice 3 to slice 17 is found on both sides, in different chunks below
    assert copied[3].max() > 0 and copied[17].max() > 0 and copied[33].max() > 0
    for chunk in (1, 7):
        features = model.features(volume, chunk_slices=chunk)
        np.testing.assert_array_equal(features.valid, reference_features.valid)
        np.testing.assert_array_equal(features.values, reference_features.values)
        detection = ClassicalDetector(model, chunk_slices=chunk).detect(volume)
        assert detection.score == pytest.approx(reference.score, abs=1e-6)
        assert detection.verdict == reference.verdict
        assert detection.anomaly_map is not None and reference.anomaly_map is not None
        np.testing.assert_allclose(detection.anomaly_map, reference.anomaly_map, atol=1e-6)
        assert [(f.slice, f.row, f.col) for f in detection.findings] == [
            (f.slice, f.row, f.col) for f in reference.findings
        ]


def test_chunk_size_must_be_positive(model: ClassicalModel) -> None:
    with pytest.raises(ValueError, match="chunk_slices"):
        ClassicalDetector(model, chunk_slices=0)
