"""Global slice detectors: tiny MONAI nets trained on phantoms, saved, reloaded, and used."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

pytest.importorskip("torch")
pytest.importorskip("monai")

from medforensics.detect import (
    create_detector,
    global_net,
    list_detectors,
)
from medforensics.detect.global_net import (
    CheckpointNotFoundError,
    GlobalModel,
    SlicePreprocessing,
    TrainResult,
    load_global,
    train_global,
)
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom
from medforensics.train.cases import TrainCase

ARCHS = ("global-cnn", "global-vit", "densenet121-slice")
#: small inputs and networks so one epoch takes a second or two
TINY_NETWORK = {
    "global-cnn": {"init_features": 8, "growth_rate": 4, "block_config": [1, 1]},
    "global-vit": {"hidden_size": 48, "mlp_dim": 96, "num_layers": 1, "num_heads": 2},
    "densenet121-slice": {},
}
GENERATED = [1, 2]


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _case(seed: int, fake: bool) -> TrainCase:
    pixels = np.rint(chest_ct_phantom(4, 64, np.random.default_rng(seed)))
    volume = ImageVolume(f"phantom-{seed}", "dicom-series", "CT", pixels)
    if not fake:
        return TrainCase(volume, None, None, f"p{seed}", "phantom")
    # a generator's output: smooth, no acquisition noise
    smooth = pixels.copy()
    smooth[GENERATED] = np.rint(ndimage.gaussian_filter(pixels[GENERATED], (0, 2.0, 2.0)))
    mask = np.zeros(pixels.shape, dtype=bool)
    mask[GENERATED] = True
    return TrainCase(dataclasses.replace(volume, pixels=smooth), mask, "synthetic", f"p{seed}", "x")


@pytest.fixture(scope="module")
def cases() -> tuple[list[TrainCase], list[TrainCase]]:
    train = [_case(s, fake) for s in range(4) for fake in (False, True)]
    val = [_case(s, fake) for s in range(10, 13) for fake in (False, True)]
    return train, val


def _train(
    arch: str, cases: tuple[list[TrainCase], list[TrainCase]], epochs: int = 1
) -> TrainResult:
    if arch == "global-vit" and importlib.util.find_spec("einops") is None:
        pytest.skip("MONAI's ViT needs einops")
    train, val = cases
    return train_global(
        arch,
        train,
        val,
        seed=0,
        epochs=epochs,
        batch_size=4,
        preprocessing=dataclasses.replace(global_net.ARCHITECTURES[arch], size=64),
        network=TINY_NETWORK[arch],
        card={"purpose": "test"},
    )


@pytest.fixture(scope="module", params=ARCHS)
def trained(
    request: pytest.FixtureRequest, cases: tuple[list[TrainCase], list[TrainCase]]
) -> TrainResult:
    return _train(request.param, cases)


def test_registered_by_name() -> None:
    assert set(ARCHS) <= set(list_detectors())


def test_one_epoch_gives_a_calibrated_detector(
    trained: TrainResult, cases: tuple[list[TrainCase], list[TrainCase]]
) -> None:
    detector = trained.detector
    assert len(trained.history) == 1 and np.isfinite(trained.history[0]["loss"])
    point = detector.model.operating_point
    assert point.target_fpr == 0.01 and 0.0 <= point.authentic_below <= point.manipulated_at <= 1.0
    fake = cases[1][1]
    detection = detector.detect(fake.volume)
    assert detection.detector == detector.name
    assert 0.0 <= detection.score <= 1.0
    assert detection.verdict in ("authentic", "manipulated", "inconclusive")
    assert all(f.kind == "global" and 0 <= f.slice < 4 for f in detection.findings)
    assert detection.findings == sorted(detection.findings, key=lambda f: -f.score)
    card = detector.describe()
    assert card["purpose"] == "test" and "validation" in card


def test_save_and_load_round_trip_to_identical_scores(
    trained: TrainResult, cases: tuple[list[TrainCase], list[TrainCase]], tmp_path: Path
) -> None:
    detector = trained.detector
    path = detector.save(tmp_path / "model")
    assert path.suffix == ".pt" and path.with_suffix(".json").is_file()
    reloaded = create_detector(detector.name, checkpoint=path)
    by_sidecar = load_global(path.with_suffix(".json"))
    volume = cases[1][1].volume
    expected = detector.slice_probabilities(volume.pixels)
    np.testing.assert_array_equal(reloaded.slice_probabilities(volume.pixels), expected)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(by_sidecar.slice_probabilities(volume.pixels), expected)
    assert reloaded.detect(volume).score == detector.detect(volume).score
    assert by_sidecar.model.preprocessing == detector.model.preprocessing


def test_detect_does_not_modify_the_input(
    trained: TrainResult, cases: tuple[list[TrainCase], list[TrainCase]]
) -> None:
    volume = cases[1][1].volume
    before = volume.pixels.copy()
    trained.detector.detect(volume)
    np.testing.assert_array_equal(volume.pixels, before)


def test_a_single_2d_image_works(trained: TrainResult) -> None:
    image = np.rint(chest_ct_phantom(1, 50, np.random.default_rng(7)))
    probabilities = trained.detector.slice_probabilities(image[0])
    assert probabilities.shape == (1,)
    detection = trained.detector.detect(ImageVolume("x.png", "image", "CT", image))
    assert detection.score == pytest.approx(
        float(
            trained.detector.model.volume_calibration(
                global_net.slice_logits(trained.detector.model, image[0])[0]
            )
        )
    )


def test_other_modalities_are_inconclusive(trained: TrainResult) -> None:
    mr = ImageVolume("mr.nii", "nifti", "MR", np.full((2, 40, 40), 300.0, np.float32))
    detection = trained.detector.detect(mr)
    assert detection.verdict == "inconclusive"
    assert "trained on CT images, this is MR" in detection.notes[-1]


def test_training_learns_generated_slices(cases: tuple[list[TrainCase], list[TrainCase]]) -> None:
    result = _train("global-cnn", cases, epochs=10)
    assert result.validation["slice_auc"] >= 0.9
    fake = cases[1][1]
    probabilities = result.detector.slice_probabilities(fake.volume.pixels)
    assert set(np.argsort(-probabilities)[:2].tolist()) == set(GENERATED)


def test_without_a_checkpoint_the_error_says_how_to_train(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(global_net, "_shipped_checkpoint", lambda arch: None)
    with pytest.raises(
        CheckpointNotFoundError, match=r"checkpoint=PATH.*train_global\('global-vit'"
    ):
        create_detector("global-vit")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match=r"nothing\.pt: not found"):
        create_detector("global-cnn", checkpoint=tmp_path / "nothing.pt")


def test_checkpoint_of_another_architecture_is_refused(
    cases: tuple[list[TrainCase], list[TrainCase]], tmp_path: Path
) -> None:
    path = _train("global-cnn", cases).detector.save(tmp_path / "cnn")
    with pytest.raises(ValueError, match=r"holds a 'global-cnn' model"):
        create_detector("densenet121-slice", checkpoint=path)


def test_corrupt_weights_name_the_file(
    cases: tuple[list[TrainCase], list[TrainCase]], tmp_path: Path
) -> None:
    path = _train("global-cnn", cases).detector.save(tmp_path / "cnn")
    path.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"cnn\.pt: cannot load this checkpoint"):
        create_detector("global-cnn", checkpoint=path)


def test_preprocessing_streams_any_size_to_the_model_input() -> None:
    prep = SlicePreprocessing(size=32)
    batch = prep(np.full((3, 50, 70), 40.0, dtype=np.float32))
    assert tuple(batch.shape) == (3, 2, 32, 32)
    assert float(batch[:, 1].abs().max()) < 1e-4  # a flat slice has no residual
    relative = SlicePreprocessing(size=16, window=None, residual=False)
    assert tuple(relative(np.arange(400, dtype=np.float32).reshape(1, 20, 20)).shape) == (
        1,
        1,
        16,
        16,
    )


def test_shipped_global_cnn_loads_and_scores_a_phantom() -> None:
    if global_net._shipped_checkpoint("global-cnn") is None:
        pytest.fail(
            "src/medforensics/models/global-cnn.pt is missing (run benchmarks/dev_global.py)"
        )
    detector = create_detector("global-cnn")
    assert isinstance(detector.model, GlobalModel)  # type: ignore[attr-defined]
    card = detector.describe()
    assert "intended_use" in card and "trained_on" in card
    volume = ImageVolume(
        "p", "dicom-series", "CT", np.rint(chest_ct_phantom(2, 64, np.random.default_rng(1)))
    )
    assert 0.0 <= detector.detect(volume).score <= 1.0


def test_spectral_features_see_upsampling_and_missing_noise() -> None:
    from medforensics.detect.spectral import UPSAMPLING_FACTORS, feature_matrix, spectral_features

    rng = np.random.default_rng(0)
    acquired = rng.normal(0.0, 20.0, (128, 128))
    upsampled = np.kron(rng.normal(0.0, 20.0, (32, 32)), np.ones((4, 4)))  # nearest, factor 4
    plain, fake = spectral_features(acquired), spectral_features(upsampled)
    factor4 = UPSAMPLING_FACTORS.index(4)
    assert fake.peaks[factor4] > plain.peaks[factor4] + 1.0
    # white noise fills every orthonormal Haar band equally; 4x4 blocks leave levels 1-2 empty
    assert np.abs(plain.wavelet).max() < 0.2
    assert fake.wavelet[:6].max() < fake.wavelet[6:].min() - 3.0
    assert fake.radial[-1] < plain.radial[-1]
    matrix = feature_matrix([acquired, np.zeros((64, 64))])
    assert matrix.shape == (2, len(plain.names())) and np.isfinite(matrix).all()
