"""The noise-residual detector on phantoms with and without a noise-inconsistent region."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from medforensics.detect import create_detector, list_detectors
from medforensics.detect.noise_residual import NoiseResidualDetector
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom

SMOOTHED = (slice(3, 7), slice(64, 128), slice(48, 112))


def _volume(pixels: np.ndarray) -> ImageVolume:
    return ImageVolume(input="phantom", kind="dicom-series", modality="CT", pixels=pixels)


@pytest.fixture(scope="module")
def authentic() -> ImageVolume:
    return _volume(chest_ct_phantom(n_slices=10, size=192, rng=np.random.default_rng(3)))


@pytest.fixture(scope="module")
def tampered(authentic: ImageVolume) -> ImageVolume:
    pixels = authentic.pixels.copy()
    pixels[SMOOTHED] = ndimage.gaussian_filter(pixels[SMOOTHED], (0, 2.0, 2.0))
    return dataclasses.replace(authentic, pixels=pixels)


def test_registered_by_name() -> None:
    assert "noise-residual" in list_detectors()
    assert isinstance(create_detector("noise-residual"), NoiseResidualDetector)


def test_smoothed_region_raises_statistic_and_score(
    authentic: ImageVolume, tampered: ImageVolume
) -> None:
    detector = NoiseResidualDetector()
    clean, forged = detector.statistic(authentic), detector.statistic(tampered)
    # a smoothed 64x64x4 block removes most of the noise there: far beyond chance (about 1)
    assert clean < 2.5
    assert forged > 2 * clean
    assert detector.detect(tampered).score > detector.detect(authentic).score


def test_top_finding_lies_in_the_smoothed_region(tampered: ImageVolume) -> None:
    detection = NoiseResidualDetector().detect(tampered)
    top = detection.findings[0]
    assert top.kind == "local"
    assert 2 <= top.slice <= 7
    assert 64 - 16 <= top.row < 128 + 16
    assert 48 - 16 <= top.col < 112 + 16
    assert detection.anomaly_map is not None
    assert detection.anomaly_map.shape == (10, 192 // 16, 192 // 16)


def test_detect_does_not_modify_the_volume(tampered: ImageVolume) -> None:
    before = tampered.pixels.copy()
    NoiseResidualDetector().detect(tampered)
    np.testing.assert_array_equal(tampered.pixels, before)


def test_blank_or_tiny_image_is_inconclusive() -> None:
    detection = NoiseResidualDetector().detect(_volume(np.zeros((1, 40, 40), np.float32)))
    assert detection.verdict == "inconclusive"
    assert "too small or blank" in detection.notes[0]


def test_score_is_deterministic(tampered: ImageVolume) -> None:
    detector = NoiseResidualDetector()
    assert detector.detect(tampered).score == detector.detect(tampered).score


def _radiograph(pixels: np.ndarray) -> ImageVolume:
    return ImageVolume(
        input="radiograph.png", kind="image", modality="OT", pixels=pixels[None].astype(np.float32)
    )


def test_a_wide_patch_from_a_less_noisy_radiograph_is_found() -> None:
    from medforensics.detect.noise_residual import tile_statistics
    from medforensics.samples import radiograph_phantom

    plane = radiograph_phantom(512, np.random.default_rng(3))[0].astype(np.float64)
    smooth = ndimage.gaussian_filter(plane, 2.0)
    box = (slice(200, 312), slice(140, 252))  # 112 px: 7 tiles, wider than the 5x5 neighbours
    spliced = plane.copy()
    spliced[box] = smooth[box] + 0.4 * (plane - smooth)[box]
    authentic, tampered = _radiograph(np.rint(plane)), _radiograph(np.rint(spliced))
    detector = NoiseResidualDetector()
    assert detector.detect(authentic).verdict == "authentic"
    result = detector.detect(tampered)
    assert result.verdict == "manipulated"
    top = result.findings[0]
    assert 200 - 16 <= top.row < 312 + 16 and 140 - 16 <= top.col < 252 + 16
    # the ungated 5x5 neighbours alone (what every image got before) see too little of it
    threshold = detector.calibration.inverse(detector.operating_point.manipulated_at)
    assert tile_statistics(tampered, 16, radiograph=False).normalised_max < threshold
    # a CT slice is compared with its neighbours only, by default
    ct = dataclasses.replace(tampered, modality="CT")
    assert tile_statistics(ct, 16).normalised_max == pytest.approx(
        tile_statistics(ct, 16, radiograph=False).normalised_max
    )
    assert tile_statistics(ct, 16, radiograph=True).normalised_max != pytest.approx(
        tile_statistics(ct, 16, radiograph=False).normalised_max
    )


def test_a_radiograph_is_compared_only_with_tiles_of_like_brightness(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a dense disk (a steel ball, bone): fewer photons, so its own, higher noise level; an
    # acquired image, nothing spliced
    from medforensics.detect import noise_residual
    from medforensics.detect.noise_residual import tile_statistics

    yy, xx = np.mgrid[:512, :512]
    disk = ndimage.gaussian_filter(((yy - 256) ** 2 + (xx - 256) ** 2 <= 56**2).astype(float), 3)
    signal = 2000 - 1400 * disk + 200 * np.sin(xx / 90.0)
    noise = np.random.default_rng(5).standard_normal(signal.shape) * np.sqrt(signal) * 0.25
    ball = _radiograph(np.rint(signal + noise * (1 + 2 * disk)))
    gated = tile_statistics(ball, 16).normalised_max
    assert gated <= tile_statistics(ball, 16, radiograph=False).normalised_max
    assert NoiseResidualDetector().detect(ball).verdict == "authentic"
    # every ring tile as a reference, whatever its brightness, the disk's noise reads as an edit
    monkeypatch.setattr(noise_residual, "BRIGHTNESS_TOLERANCE", float("inf"))
    assert tile_statistics(ball, 16).normalised_max > gated + 2


def test_a_small_radiograph_is_still_assessed() -> None:
    # a 128² crop across a steep brightness ramp has too few tiles of like brightness side by
    # side for radiograph mode; it falls back to all neighbours instead of "too small"
    yy, xx = np.mgrid[:128, :128]
    noise = np.random.default_rng(0).normal(0.0, 5.0, (128, 128))
    crop = _radiograph(np.rint(1000 + 20 * (xx + 0.3 * yy) + noise))
    result = NoiseResidualDetector().detect(crop)
    assert result.verdict == "authentic", result.notes


def test_the_sorted_median_is_numpys_nanmedian() -> None:
    import warnings

    from medforensics.detect.noise_residual import _nanmedian_first

    rng = np.random.default_rng(7)
    for shape in ((24, 3, 10, 10), (7, 1, 5, 5), (144, 1, 8, 8)):
        stack = rng.random(shape)
        stack[stack < 0.3] = np.nan
        stack[:, 0, 0, 0] = np.nan  # a tile with no valid value at all
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = np.nanmedian(stack, axis=0)
        median, counts = _nanmedian_first(stack)
        np.testing.assert_array_equal(np.isnan(median), np.isnan(expected))
        np.testing.assert_allclose(median[~np.isnan(median)], expected[~np.isnan(expected)])
        np.testing.assert_array_equal(counts, np.sum(~np.isnan(stack), axis=0))
