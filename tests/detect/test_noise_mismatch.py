"""The ``noise-mismatch`` check: a CT patch whose noise level is far from its surroundings'."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from medforensics.detect import create_detector
from medforensics.detect.noise_mismatch import (
    CLEAR_BELOW,
    MIDDLE,
    NoiseMismatchDetector,
    probabilities,
    probability,
)
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom

SIZE = 256


def _volume(pixels: np.ndarray, **attributes: str) -> ImageVolume:
    return ImageVolume(
        input="phantom",
        kind="dicom-series",
        modality="CT",
        pixels=pixels.astype(np.float32),
        spacing=(2.5, 0.7, 0.7),
        attributes=dict(attributes),
    )


@pytest.fixture(scope="module")
def acquired() -> np.ndarray:
    return np.rint(chest_ct_phantom(3, SIZE, np.random.default_rng(5)))


def _pasted(acquired: np.ndarray, gain: float) -> tuple[np.ndarray, tuple[int, int]]:
    """A disk of radius 28 px of the middle slice's soft tissue whose noise is ``gain`` times
    its own (as a patch from a sharper-kernel scan would be), its mean kept. A 256² phantom has
    few tiles to compare, so the tests use a large gain (8x)."""
    image = acquired[1]
    tissue = ndimage.binary_opening((image > -200) & (image < 200), iterations=2)
    depth = ndimage.distance_transform_edt(tissue)
    cy, cx = np.unravel_index(int(np.argmax(depth)), depth.shape)
    yy, xx = np.ogrid[:SIZE, :SIZE]
    disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= 28**2
    smooth = ndimage.gaussian_filter(image, 3.0)
    out = acquired.copy()
    out[1][disk] = np.rint(smooth[disk] + gain * (image - smooth)[disk])
    return out, (int(cy), int(cx))


def test_the_rule_is_the_stated_one() -> None:
    assert probability(CLEAR_BELOW) == pytest.approx(0.01)
    assert probability(MIDDLE) == pytest.approx(0.5)
    assert probability(math.nan) == 0.0
    values = np.array([CLEAR_BELOW, MIDDLE, 7.0])
    np.testing.assert_allclose(probabilities(values), [probability(v) for v in values], rtol=1e-5)


def test_acquired_ct_is_authentic(acquired: np.ndarray) -> None:
    result = NoiseMismatchDetector().detect(_volume(acquired))
    assert result.verdict == "authentic" and result.score < 0.01 and not result.findings


def test_a_patch_with_another_scans_noise_is_found(acquired: np.ndarray) -> None:
    pixels, (cy, cx) = _pasted(acquired, gain=8.0)
    result = NoiseMismatchDetector().detect(_volume(pixels))
    assert result.verdict == "manipulated", result.notes
    top = result.findings[0]
    assert top.slice == 1 and math.hypot(top.row - cy, top.col - cx) <= 40, top


def test_lossy_pixels_are_not_assessed(acquired: np.ndarray) -> None:
    pixels, _ = _pasted(acquired, gain=8.0)
    lossy = _volume(pixels, LossyImageCompression="01", LossyImageCompressionRatio="12")
    result = NoiseMismatchDetector().detect(lossy)
    assert result.verdict == "inconclusive" and result.score == 0.5 and not result.findings
    assert "lossy" in result.notes[0]


def test_auto_calls_the_patch_manipulated_and_leaves_acquired_ct_alone(
    acquired: np.ndarray,
) -> None:
    auto = create_detector("auto")
    assert auto.detect(_volume(acquired)).verdict == "authentic"
    pixels, (cy, cx) = _pasted(acquired, gain=8.0)
    result = auto.detect(_volume(pixels))
    assert result.verdict == "manipulated"
    assert any("noise level is far from the tissue" in note for note in result.notes)
    assert math.hypot(result.findings[0].row - cy, result.findings[0].col - cx) <= 40
    without = create_detector("auto", noise_mismatch=False).detect(_volume(pixels))
    assert without.verdict != "manipulated"
