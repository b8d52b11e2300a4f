"""Issue 6: benign processing never turns an authentic radiograph or MR image "manipulated".

The whole default detector (``create_detector("auto")``: noise-residual, copy-move and
synthetic-2d for radiographs, PNGs and MR) judges authentic images made here (phantom
radiographs of ``samples.phantom``, an MR-like phantom, a projection radiograph simulated from
a CT phantom) and one real MR bundled with pydicom, before and after each everyday operation:
a 16-bit PNG re-save, two 16 -> 8-bit exports (windowed to the full range; a plain bit shift),
anti-aliased resizes by 0.75 and 1.25 and lossless re-encodes (RLE, JPEG 2000, JPEG-LS).
Each original must be authentic first, so that the checks can fail; afterwards no model of the
route may reach its own ``manipulated`` threshold, and the combined verdict is not
``manipulated``. Every (image, operation) pair is its own test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels.encoders import (
    JPEG2000LosslessEncoder,
    JPEGLSLosslessEncoder,
    RLELosslessEncoder,
)
from pydicom.uid import UID, JPEG2000Lossless, JPEGLSLossless, RLELossless
from skimage.transform import resize

from medforensics.detect import create_detector
from medforensics.detect.auto import AutoDetector
from medforensics.detect.base import Detector
from medforensics.detect.types import Detection, OperatingPoint
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom, radiograph_phantom
from medforensics.samples.projection import ct_projection
from medforensics.samples.write import write_dicom_image

#: the models the radiograph / MR route must run (a missing one would make the test moot)
ROUTE = {"noise-residual", "copy-move", "synthetic-2d"}
#: every source is written with 12 stored bits
BITS = 12
#: one model's detection and its ``manipulated`` threshold
Judged = tuple[Detection, float]


def _mr_phantom(size: int, seed: int) -> np.ndarray:
    """An MR-like magnitude slice: CT phantom anatomy mapped to T1-like contrast, k-space kept
    to the central 70 %, complex Gaussian noise (Rician magnitude), 12-bit stored values."""
    rng = np.random.default_rng(seed)
    hu = chest_ct_phantom(1, size, rng)[0]
    contrast = np.interp(
        hu, [-1000, -700, -150, -50, 20, 60, 400], [0, 0.05, 0.9, 0.9, 0.5, 0.45, 0.15]
    )
    noisy = contrast + 0.02 * (rng.standard_normal(hu.shape) + 1j * rng.standard_normal(hu.shape))
    k = np.fft.fftshift(np.fft.fft2(noisy))
    half, c = int(size * 0.35), size // 2
    kept = np.zeros_like(k)
    kept[c - half : c + half, c - half : c + half] = k[c - half : c + half, c - half : c + half]
    magnitude = np.abs(np.fft.ifft2(np.fft.ifftshift(kept))) * 2500
    return np.clip(np.rint(magnitude), 0, 2**BITS - 1)


def _projection(seed: int) -> np.ndarray:
    """A 240x192 radiograph simulated from a CT phantom (``samples.projection``), at the CT's
    own pixel size (an upsampled one is smoother than an acquired image)."""
    hu = chest_ct_phantom(48, 192, np.random.default_rng(seed))
    ct = ImageVolume("ct", "dicom-series", "CT", hu, spacing=(4.0, 0.8, 0.8))
    return ct_projection(ct, np.random.default_rng(seed + 1)).pixels[0]


def _pydicom_file(name: str) -> Callable[[Path], Path]:
    def source(_: Path) -> Path:
        from pydicom.data import get_testdata_file

        path = get_testdata_file(name)  # bundled with pydicom: never downloaded
        if path is None:
            pytest.skip(f"pydicom's test file {name} is not installed")
        return Path(str(path))

    return source


def _written(make: Callable[[], np.ndarray], modality: str) -> Callable[[Path], Path]:
    def source(folder: Path) -> Path:
        return write_dicom_image(make(), folder / "original.dcm", modality=modality)

    return source


#: authentic sources, each written as (or read from) a 12-bit DICOM file
SOURCES: dict[str, Callable[[Path], Path]] = {
    "radiograph-512": _written(
        lambda: np.rint(radiograph_phantom(512, np.random.default_rng(8))[0]), "DX"
    ),
    "radiograph-1024": _written(
        lambda: np.rint(radiograph_phantom(1024, np.random.default_rng(3))[0]), "DX"
    ),
    "projection-of-ct": _written(lambda: _projection(4), "DX"),
    "mr-phantom-256": _written(lambda: _mr_phantom(256, 5), "MR"),
    "mr-pydicom-overlay": _pydicom_file("examples_overlay.dcm"),
}


def _read(path: Path) -> ImageVolume:
    items = list(load_paths([str(path)]))
    volumes = [item for item in items if isinstance(item, ImageVolume)]
    assert len(volumes) == 1, f"{path} did not load as one image: {items}"
    return volumes[0]


def _png(pixels: np.ndarray, path: Path) -> ImageVolume:
    Image.fromarray(pixels).save(path)
    return _read(path)


def png_16bit(original: Path, folder: Path) -> ImageVolume:
    pixels = _read(original).pixels[0]
    volume = _png(pixels.astype(np.uint16), folder / "sixteen.png")
    np.testing.assert_array_equal(volume.pixels[0], pixels)
    return volume


def eight_bit_windowed(original: Path, folder: Path) -> ImageVolume:
    """Stored values windowed to 0..255 over their full range and rounded (a viewer export)."""
    pixels = _read(original).pixels[0]
    low, span = float(pixels.min()), max(float(np.ptp(pixels)), 1e-9)
    return _png(np.rint((pixels - low) / span * 255).astype(np.uint8), folder / "eight.png")


def eight_bit_shift(original: Path, folder: Path) -> ImageVolume:
    """The top 8 of the 12 stored bits (value // 16): noise below one grey level survives."""
    pixels = np.clip(_read(original).pixels[0], 0, 2**BITS - 1).astype(np.uint16)
    return _png((pixels >> (BITS - 8)).astype(np.uint8), folder / "shift.png")


def _resized(factor: float) -> Callable[[Path, Path], ImageVolume]:
    def operation(original: Path, folder: Path) -> ImageVolume:
        """Anti-aliased cubic resize, rounded to the 12-bit grid and saved as DICOM again."""
        volume = _read(original)
        pixels = volume.pixels[0].astype(np.float64)
        shape = (round(pixels.shape[0] * factor), round(pixels.shape[1] * factor))
        scaled = resize(pixels, shape, order=3, anti_aliasing=True, preserve_range=True)
        stored = np.clip(np.rint(scaled), 0, 2**BITS - 1)
        return _read(write_dicom_image(stored, folder / "resized.dcm", modality=volume.modality))

    return operation


ENCODERS = {
    RLELossless: RLELosslessEncoder,
    JPEG2000Lossless: JPEG2000LosslessEncoder,
    JPEGLSLossless: JPEGLSLosslessEncoder,
}


def _lossless(syntax: UID) -> Callable[[Path, Path], ImageVolume]:
    def operation(original: Path, folder: Path) -> ImageVolume:
        encoder = ENCODERS[syntax]
        if not encoder.is_available:
            pytest.skip(f"no {syntax.name} encoder: {'; '.join(encoder.missing_dependencies)}")
        dataset = pydicom.dcmread(original)
        dataset.compress(syntax)
        dataset.save_as(folder / "lossless.dcm")
        volume = _read(folder / "lossless.dcm")
        np.testing.assert_array_equal(volume.pixels, _read(original).pixels)
        return volume

    return operation


OPERATIONS: dict[str, Callable[[Path, Path], ImageVolume]] = {
    "png-16bit": png_16bit,
    "8bit-windowed-png": eight_bit_windowed,
    "8bit-shift-png": eight_bit_shift,
    "resize-x0.75": _resized(0.75),
    "resize-x1.25": _resized(1.25),
    "rle-lossless": _lossless(RLELossless),
    "jpeg2000-lossless": _lossless(JPEG2000Lossless),
    "jpegls-lossless": _lossless(JPEGLSLossless),
}


@pytest.fixture(scope="module")
def auto() -> AutoDetector:
    detector = create_detector("auto")
    assert isinstance(detector, AutoDetector)
    return detector


def _judge(auto: AutoDetector, volume: ImageVolume) -> tuple[Detection, dict[str, Judged]]:
    """The combined detection, and each routed model's own with its ``manipulated`` threshold."""
    chosen, notes = auto.route(volume)
    assert {d.name for d in chosen} == ROUTE, f"{volume.modality} routed to {notes}"
    return auto.detect(volume), {d.name: (d.detect(volume), _threshold(d)) for d in chosen}


def _threshold(detector: Detector) -> float:
    point = getattr(detector, "operating_point", None)
    assert isinstance(point, OperatingPoint), f"{detector.name} has no operating point"
    return point.manipulated_at


def _summary(models: dict[str, Judged]) -> str:
    return ", ".join(
        f"{name} {d.score:.3f} {d.verdict} (threshold {t:.3f})" for name, (d, t) in models.items()
    )


@dataclass
class Original:
    """An authentic source file and how the route judged it."""

    path: Path
    combined: Detection
    models: dict[str, Judged]


@pytest.fixture(scope="module", params=list(SOURCES))
def original(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, auto: AutoDetector
) -> Original:
    """One authentic source, written and judged once for all its operations."""
    name = str(request.param)
    path = SOURCES[name](tmp_path_factory.mktemp(name))
    return Original(path, *_judge(auto, _read(path)))


def test_the_authentic_original_is_authentic(original: Original) -> None:
    assert original.combined.verdict == "authentic", _summary(original.models)
    assert all(d.verdict == "authentic" for d, _ in original.models.values()), _summary(
        original.models
    )


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_benign_processing_is_not_called_manipulated(
    auto: AutoDetector, original: Original, operation: str, tmp_path: Path
) -> None:
    assert original.combined.verdict == "authentic", f"original: {_summary(original.models)}"

    combined, models = _judge(auto, OPERATIONS[operation](original.path, tmp_path))
    assert combined.verdict != "manipulated", f"{operation}: {_summary(models)}"
    for name, (detection, threshold) in models.items():
        assert detection.score < threshold, f"{operation}: {name} too high: {_summary(models)}"
    assert combined.score == pytest.approx(max(d.score for d, _ in models.values()))


def test_a_real_manipulation_of_the_same_image_is_caught(auto: AutoDetector) -> None:
    """The checks above cannot pass by a route that calls everything authentic."""
    pixels = np.rint(radiograph_phantom(512, np.random.default_rng(8))).astype(np.float32)
    pixels[0, 300:350, 300:350] = pixels[0, 150:200, 150:200]  # clone stamp
    combined, models = _judge(auto, ImageVolume("cloned.png", "image", "DX", pixels))
    assert combined.verdict == "manipulated", _summary(models)
    assert models["copy-move"][0].verdict == "manipulated", _summary(models)
