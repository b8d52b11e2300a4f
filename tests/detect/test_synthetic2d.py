"""synthetic-2d: the shipped model loads and judges phantoms; features separate real from fake;
benign processing of authentic images does not make them look generated."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medforensics.detect import create_detector, list_detectors
from medforensics.detect.synthetic2d import (
    FEATURE_NAMES,
    MODALITIES,
    Synthetic2DDetector,
    Synthetic2DModel,
    fit_logistic,
    slice_features,
)
from medforensics.evaluate.metrics import roc_auc
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom, radiograph_phantom


def _volume(pixels: np.ndarray, modality: str = "DX", kind: str = "image") -> ImageVolume:
    array = np.asarray(pixels, dtype=np.float32)
    return ImageVolume("test", kind, modality, array[None] if array.ndim == 2 else array)  # type: ignore[arg-type]


def mr_phantom(n_slices: int, size: int, seed: int) -> np.ndarray:
    """MR-like magnitude slices from the CT phantom: tissue contrast, k-space truncation to
    70 %, complex noise (Rician magnitude), 12-bit grid."""
    rng = np.random.default_rng(seed)
    hu = chest_ct_phantom(n_slices, size, rng)
    contrast = np.interp(
        hu, [-1000, -700, -150, -50, 20, 60, 400], [0, 0.05, 0.9, 0.9, 0.5, 0.45, 0.15]
    )
    slices = []
    for plane in contrast:
        noisy = plane + 0.02 * (
            rng.standard_normal(plane.shape) + 1j * rng.standard_normal(plane.shape)
        )
        k = np.fft.fftshift(np.fft.fft2(noisy))
        half, c = int(size * 0.35), size // 2
        kept = np.zeros_like(k)
        kept[c - half : c + half, c - half : c + half] = k[c - half : c + half, c - half : c + half]
        slices.append(np.abs(np.fft.ifft2(np.fft.ifftshift(kept))) * 2500)
    return np.clip(np.rint(np.stack(slices)), 0, 4095).astype(np.float32)


@pytest.fixture(scope="module")
def detector() -> Synthetic2DDetector:
    found = create_detector("synthetic-2d")
    assert isinstance(found, Synthetic2DDetector)
    return found


@pytest.fixture(scope="module")
def radiograph() -> ImageVolume:
    return _volume(radiograph_phantom(384, np.random.default_rng(21))[0])


def test_registered_and_loads_the_shipped_model(detector: Synthetic2DDetector) -> None:
    assert "synthetic-2d" in list_detectors()
    assert detector.model.feature_names == list(FEATURE_NAMES)
    card = detector.describe()
    assert card["name"] == "synthetic-2d"
    assert "leave_one_generator_out" in card and "trained_on" in card
    point = detector.operating_point
    assert point.target_fpr == 0.01 and 0.0 < point.manipulated_at <= 1.0
    assert set(MODALITIES) >= {"CR", "DX", "MR", "OT"}


def test_radiograph_phantom_is_scored_authentic(
    detector: Synthetic2DDetector, radiograph: ImageVolume
) -> None:
    detection = detector.detect(radiograph)
    assert detection.detector == "synthetic-2d"
    assert 0.0 <= detection.score <= 1.0
    assert detection.verdict == "authentic"
    (finding,) = detection.findings
    assert finding.kind == "global" and finding.slice == 0
    assert (finding.row, finding.col) == (192, 192)


def test_mr_phantom_volume_score_is_the_calibrated_mean_slice_logit(
    detector: Synthetic2DDetector,
) -> None:
    volume = _volume(mr_phantom(4, 128, seed=5), modality="MR", kind="dicom-series")
    logits = detector.slice_logits(volume)
    assert sorted(logits) == [0, 1, 2, 3]
    detection = detector.detect(volume)
    expected = detector.model.calibration.probability(float(np.mean(list(logits.values()))))
    assert detection.score == pytest.approx(expected)
    assert detection.verdict != "manipulated"
    assert detection.findings[0].slice == max(logits, key=logits.__getitem__)
    assert "mean logit" in detection.notes[0]


def test_images_it_cannot_judge_are_not_assessed(detector: Synthetic2DDetector) -> None:
    small = detector.detect(_volume(radiograph_phantom(32, np.random.default_rng(0))[0]))
    assert small.verdict == "inconclusive" and "32x32" in small.notes[0]
    blank = detector.detect(_volume(np.full((128, 128), 7.0)))
    assert blank.verdict == "inconclusive" and "blank" in blank.notes[0]
    ct = detector.detect(_volume(chest_ct_phantom(2, 64), modality="CT"))
    assert ct.verdict == "inconclusive" and "CT" in ct.notes[0]
    assert slice_features(np.zeros((100, 100))) is None


def test_features_of_a_1024_radiograph_are_cheap_and_finite() -> None:
    import time

    image = radiograph_phantom(1024, np.random.default_rng(2))[0]
    slice_features(image)
    start = time.perf_counter()
    features = slice_features(image)
    elapsed = time.perf_counter() - start
    assert features is not None and features.shape == (len(FEATURE_NAMES),)
    assert np.all(np.isfinite(features))
    assert elapsed < 0.5  # about 0.07 s alone; generous for a busy machine


def test_tiny_trained_classifier_separates_phantoms_from_generator_fakes() -> None:
    torch = pytest.importorskip("torch")
    from medforensics.tamper.generators import (
        fake_like,
        train_image_generator,
        training_crops,
        unit_range,
    )

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    reals = [
        radiograph_phantom(int(s), np.random.default_rng(k), float(rng.uniform(3, 10)))[0]
        for k, s in enumerate(rng.choice([128, 160, 192], size=24))
    ]
    crops = training_crops(reals[:6], 32, 64, rng)
    gan = train_image_generator(crops, "gan", seed=0, steps=20, batch_size=8, width=4, latent=8)
    units = gan.sample(24, seed=1)
    fakes = [
        fake_like(u, r.shape, unit_range(r), bits=12) for u, r in zip(units, reals, strict=True)
    ]
    x = np.stack([slice_features(im) for im in reals + fakes])  # type: ignore[misc]
    y = np.array([0] * 24 + [1] * 24)
    train = np.arange(48) % 2 == 0
    mean, scale, coef, intercept = fit_logistic(x[train], y[train], c=0.1)
    scores = ((x[~train] - mean) / scale) @ coef + intercept
    assert roc_auc(y[~train], scores) >= 0.95


def test_model_round_trips_and_rejects_foreign_features(
    detector: Synthetic2DDetector, tmp_path: Path
) -> None:
    path = detector.model.save(tmp_path / "model.json")
    loaded = Synthetic2DModel.load(path)
    np.testing.assert_array_equal(loaded.coef, detector.model.coef)
    assert loaded.preprocessing == detector.model.preprocessing
    broken = dataclasses.replace(detector.model, feature_names=[*FEATURE_NAMES[:-1], "other"])
    broken.save(tmp_path / "broken.json")
    with pytest.raises(ValueError, match="retrain"):
        Synthetic2DModel.load(tmp_path / "broken.json")
    with pytest.raises(FileNotFoundError, match="dev_synthetic2d"):
        Synthetic2DDetector(tmp_path / "absent.json")


# --- benign processing must not make an authentic image "manipulated" -------------------------


def _rt_image_path() -> Path | None:
    try:
        import pynetdicom
    except ImportError:
        return None
    path = Path(pynetdicom.__file__).parent / "tests" / "dicom_files" / "RTImageStorage.dcm"
    return path if path.is_file() else None


def _read(path: Path) -> ImageVolume:
    (volume,) = [v for v in load_paths([str(path)]) if isinstance(v, ImageVolume)]
    return volume


def _resize(pixels: np.ndarray, factor: float) -> np.ndarray:
    rows, cols = pixels.shape
    image = Image.fromarray(pixels.astype(np.float32), mode="F")
    return np.asarray(image.resize((round(cols * factor), round(rows * factor)), Image.BICUBIC))


def _benign_versions(
    stored: ImageVolume, folder: Path, bits: int, lossless: Path
) -> dict[str, ImageVolume]:
    """PNG re-save, 8-bit export, resizes within clinical ranges and a lossless re-encode."""
    pixels = stored.pixels[0]
    top = 2**bits - 1
    eight = np.rint((pixels - pixels.min()) / max(np.ptp(pixels), 1e-9) * 255).astype(np.uint8)
    Image.fromarray(eight).save(folder / "eight.png")
    Image.fromarray(np.clip(pixels, 0, 65535).astype(np.uint16)).save(folder / "sixteen.png")
    return {
        "as stored": stored,
        "16-bit PNG re-save": _read(folder / "sixteen.png"),
        "8-bit PNG": _read(folder / "eight.png"),
        "resize x0.75": _volume(np.clip(np.rint(_resize(pixels, 0.75)), 0, top)),
        "resize x1.25": _volume(np.clip(np.rint(_resize(pixels, 1.25)), 0, top)),
        "RLE lossless re-encode": _read(lossless),
    }


def _judge(detector: Synthetic2DDetector, versions: dict[str, ImageVolume]) -> dict[str, str]:
    verdicts = {}
    for name, volume in versions.items():
        detection = detector.detect(volume)
        assert detection.findings, f"{name} was not assessed: {detection.notes}"
        verdicts[name] = f"{detection.verdict} ({detection.score:.3f})"
    return verdicts


def test_benign_processing_keeps_the_radiograph_phantom_authentic(
    detector: Synthetic2DDetector, tmp_path: Path
) -> None:
    from pydicom.uid import RLELossless

    from medforensics.samples.write import write_dicom_image

    pixels = np.rint(radiograph_phantom(512, np.random.default_rng(8))[0])  # 12-bit stored
    lossless = write_dicom_image(pixels, tmp_path / "rle.dcm", transfer_syntax=RLELossless)
    versions = _benign_versions(_volume(pixels), tmp_path, 12, lossless)
    np.testing.assert_array_equal(versions["RLE lossless re-encode"].pixels[0], pixels)
    verdicts = _judge(detector, versions)
    assert not any(v.startswith("manipulated") for v in verdicts.values()), verdicts


def test_benign_processing_keeps_the_rt_portal_image_authentic(
    detector: Synthetic2DDetector, tmp_path: Path
) -> None:
    import pydicom
    from pydicom.uid import RLELossless

    path = _rt_image_path()
    if path is None:
        pytest.skip("pynetdicom's RTImageStorage.dcm test file is not installed")
    dataset = pydicom.dcmread(path)
    dataset.compress(RLELossless)
    dataset.save_as(tmp_path / "rt_rle.dcm")
    stored = _read(path)
    versions = _benign_versions(stored, tmp_path, 16, tmp_path / "rt_rle.dcm")
    np.testing.assert_array_equal(versions["RLE lossless re-encode"].pixels, stored.pixels)
    verdicts = _judge(detector, versions)
    assert not any(v.startswith("manipulated") for v in verdicts.values()), verdicts
