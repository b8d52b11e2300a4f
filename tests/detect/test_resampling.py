"""The interpolation-trace (``resampling``) check, alone and inside ``auto``."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from medforensics.detect import Detection, Finding, create_detector, list_detectors
from medforensics.detect.auto import declares_derivation, with_resampling
from medforensics.detect.resampling import (
    OPERATING_POINT,
    ResamplingDetector,
    expected_frequency,
    interpolation_trace,
    probability,
)
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom
from medforensics.tamper.launder import apply_laundering
from medforensics.tamper.regrid import round_trip, touch_up_injection, touch_up_weights

SPACING = (2.5, 0.7, 0.7)


def _volume(pixels: np.ndarray, modality: str = "CT") -> ImageVolume:
    return ImageVolume(
        input="phantom", kind="dicom-series", modality=modality, pixels=pixels, spacing=SPACING
    )


@pytest.fixture(scope="module")
def authentic() -> ImageVolume:
    return _volume(chest_ct_phantom(n_slices=12, size=256, rng=np.random.default_rng(5)))


@pytest.fixture(scope="module")
def regridded(authentic: ImageVolume) -> ImageVolume:
    """What CT-GAN's pipeline does to every scan it touches, with no edit at all."""
    return dataclasses.replace(authentic, pixels=round_trip(authentic.pixels, SPACING))


def test_registered_by_name() -> None:
    assert "resampling" in list_detectors()
    assert isinstance(create_detector("resampling"), ResamplingDetector)


def test_expected_frequency_of_a_round_trip_through_1mm() -> None:
    assert expected_frequency(0.842) == pytest.approx(0.158)
    assert expected_frequency(0.7) == pytest.approx(0.3)
    assert expected_frequency(math.nan) is None


def test_round_trip_keeps_shape_and_changes_pixels(authentic: ImageVolume) -> None:
    out = round_trip(authentic.pixels, SPACING)
    assert out.shape == authentic.pixels.shape
    assert not np.array_equal(out, authentic.pixels)
    # a re-gridding, not a different image: the anatomy is where it was
    assert np.corrcoef(out.ravel(), authentic.pixels.ravel())[0, 1] > 0.99


def test_authentic_phantom_has_no_trace(authentic: ImageVolume) -> None:
    trace = interpolation_trace(authentic)
    assert trace is not None
    assert probability(trace.strength) < OPERATING_POINT.authentic_below
    assert ResamplingDetector().detect(authentic).verdict == "authentic"


def test_ctgan_round_trip_is_flagged_at_its_period(
    authentic: ImageVolume, regridded: ImageVolume
) -> None:
    clean, trace = interpolation_trace(authentic), interpolation_trace(regridded)
    assert clean is not None and trace is not None
    assert trace.strength > 10 * clean.strength
    assert trace.frequency == pytest.approx(0.3, abs=0.01)
    detection = ResamplingDetector().detect(regridded)
    assert detection.verdict == "manipulated"
    (finding,) = detection.findings
    assert finding.kind == "global"
    assert "1 mm" in finding.detail


def test_one_regridded_512_slice_is_enough() -> None:
    one = _volume(chest_ct_phantom(n_slices=1, size=512, rng=np.random.default_rng(6)))
    assert ResamplingDetector().detect(one).verdict == "authentic"
    regridded = dataclasses.replace(one, pixels=round_trip(one.pixels, SPACING))
    assert ResamplingDetector().detect(regridded).verdict == "manipulated"


@pytest.mark.parametrize("interpolation", ["linear", "cubic", "area"])
def test_resize_laundering_is_flagged(authentic: ImageVolume, interpolation: str) -> None:
    steps = [{"op": "resample", "factor": 0.6, "interpolation": interpolation}]
    pixels = apply_laundering(authentic.pixels, authentic, steps, np.random.default_rng(0))
    laundered = dataclasses.replace(authentic, pixels=pixels.astype(np.float32))
    assert ResamplingDetector().detect(laundered).verdict == "manipulated"


def test_lossless_geometry_leaves_no_trace(authentic: ImageVolume) -> None:
    """Flips, whole-pixel shifts and re-ordering re-grid nothing: they must not be flagged."""
    for pixels in (
        authentic.pixels[:, ::-1, :],
        np.roll(authentic.pixels, (7, -3), axis=(1, 2)),
        authentic.pixels[::-1],
        np.ascontiguousarray(np.swapaxes(authentic.pixels, 1, 2)),
    ):
        detection = ResamplingDetector().detect(dataclasses.replace(authentic, pixels=pixels))
        assert detection.verdict == "authentic"


def test_too_small_is_not_assessed() -> None:
    tiny = _volume(np.zeros((3, 32, 32), dtype=np.float32))
    assert interpolation_trace(tiny) is None
    assert ResamplingDetector().detect(tiny).verdict == "inconclusive"


def _pixel(score: float, verdict: str = "authentic") -> Detection:
    local = Finding(kind="local", score=score, slice=1, row=10, col=10, radius=5)
    return Detection(detector="px", score=score, verdict=verdict, findings=[local])  # type: ignore[arg-type]


def test_auto_combination_keeps_pixel_order_and_findings_first(regridded: ImageVolume) -> None:
    trace = ResamplingDetector().detect(regridded)
    low, high = with_resampling(_pixel(0.1), trace), with_resampling(_pixel(0.4), trace)
    assert 0.5 <= low.score < high.score <= 1.0
    assert low.verdict == high.verdict == "manipulated"
    assert [f.kind for f in low.findings] == ["local", "global"]


def test_auto_combination_ignores_no_trace(authentic: ImageVolume) -> None:
    clean = with_resampling(_pixel(0.3), ResamplingDetector().detect(authentic))
    assert clean.score == 0.3
    assert clean.verdict == "authentic"
    assert [f.kind for f in clean.findings] == ["local"]


def test_auto_flags_a_regridded_ct_but_not_a_regridded_mr(regridded: ImageVolume) -> None:
    auto = create_detector("auto")
    ct = auto.detect(regridded)
    assert ct.verdict == "manipulated"
    assert ct.score >= 0.5
    assert any(f.kind == "global" and "re-interpolated" in f.detail for f in ct.findings)
    mr = auto.detect(dataclasses.replace(regridded, modality="MR"))
    assert not any("re-interpolated" in f.detail for f in mr.findings)


# --- where a re-gridded series lacks the trace (resampling_map) ------------------------------


@pytest.fixture(scope="module")
def big_series() -> tuple[np.ndarray, np.ndarray]:
    """A 512² phantom series with a sharp kernel's white noise, and its CT-GAN round trip."""
    rng = np.random.default_rng(9)
    pixels = chest_ct_phantom(n_slices=10, size=512, rng=rng)
    pixels = np.round(pixels + rng.normal(0.0, 25.0, pixels.shape)).astype(np.float32)
    return pixels, round_trip(pixels, SPACING)


def test_touch_up_weights_are_a_bump() -> None:
    bump = touch_up_weights(64)
    assert bump.shape == (64, 64)
    assert bump.min() == 0.0 and bump.max() == 1.0
    assert bump[32, 32] > 0.95 > bump[32, 8] > bump[32, 0]


def test_touch_up_restores_original_lung_around_the_site(
    big_series: tuple[np.ndarray, np.ndarray],
) -> None:
    original, regridded = big_series
    edited = touch_up_injection(original, regridded, (5, 256, 150))
    outside = np.ones(original.shape, dtype=bool)
    outside[:, 224:288, 118:182] = False
    assert np.array_equal(edited[outside], regridded[outside])
    lung = original[:, 224:288, 118:182] < -700
    inside = edited[:, 224:288, 118:182]
    # max(blend, original) never goes below the original; in lung it is nearly the original
    assert np.all(inside >= original[:, 224:288, 118:182] - 1e-3)
    assert np.median(np.abs(inside - original[:, 224:288, 118:182])[lung]) < 5.0


def test_hole_in_the_trace_is_located(big_series: tuple[np.ndarray, np.ndarray]) -> None:
    original, regridded = big_series
    lung = np.argwhere(original[5, 128:-128, 96:-96] < -800)
    r, c = (int(v) for v in lung[len(lung) // 2] + (128, 96))
    edited = touch_up_injection(original, regridded, (5, r, c))
    detection = ResamplingDetector().detect(_volume(edited))
    assert detection.verdict == "manipulated"
    local = [f for f in detection.findings if f.kind == "local"]
    assert local, detection.notes
    assert abs(local[0].row - r) <= 20 and abs(local[0].col - c) <= 20
    assert detection.anomaly_map is not None and detection.map_stride == 8
    plain = ResamplingDetector().detect(_volume(regridded))
    assert not [f for f in plain.findings if f.kind == "local"]


# --- lossy codecs leave periodic patterns that are not re-gridding ---------------------------


@pytest.mark.parametrize(
    "step",
    [
        {"op": "jpeg", "window": [40.0, 400.0], "quality": 40},
        {"op": "jpeg", "window": [-600.0, 1500.0], "quality": 60},
        {"op": "jpeg2000", "rate": 20.0},
    ],
    ids=["jpeg-soft-tissue", "jpeg-wide", "jpeg2000"],
)
def test_lossy_coding_is_not_regridding(
    big_series: tuple[np.ndarray, np.ndarray], step: dict[str, object]
) -> None:
    original, _ = big_series
    volume = _volume(original)
    coded = apply_laundering(original, volume, [step], np.random.default_rng(0))
    detection = ResamplingDetector().detect(dataclasses.replace(volume, pixels=coded))
    assert detection.verdict == "authentic", detection.notes


def test_block_grid_is_seen_and_left_out(big_series: tuple[np.ndarray, np.ndarray]) -> None:
    original, _ = big_series
    volume = _volume(original)
    step = {"op": "jpeg", "window": [40.0, 400.0], "quality": 40}
    coded = apply_laundering(original, volume, [step], np.random.default_rng(0))
    trace = interpolation_trace(dataclasses.replace(volume, pixels=coded))
    assert trace is not None and trace.block_grid
    assert interpolation_trace(volume).block_grid is False  # type: ignore[union-attr]


def test_regridding_at_an_eighth_is_still_caught(
    big_series: tuple[np.ndarray, np.ndarray],
) -> None:
    """0.75 mm pixels through 1 mm leave a trace at 2/8 c/px, with no other eighth: not JPEG."""
    original, _ = big_series
    regridded = round_trip(original, (2.5, 0.75, 0.75))
    volume = dataclasses.replace(_volume(regridded), spacing=(2.5, 0.75, 0.75))
    trace = interpolation_trace(volume)
    assert trace is not None and not trace.block_grid
    assert trace.frequency == pytest.approx(0.25, abs=0.01)
    assert probability(trace.strength) >= 0.5


def test_declared_derivation_is_reported_not_scored(regridded: ImageVolume) -> None:
    trace = ResamplingDetector().detect(regridded)
    derived = dataclasses.replace(regridded, attributes={"ImageType": "DERIVED\\SECONDARY\\MPR"})
    assert declares_derivation(derived)
    assert not declares_derivation(regridded)
    assert not declares_derivation(
        dataclasses.replace(regridded, attributes={"ImageType": "ORIGINAL\\PRIMARY\\AXIAL"})
    )
    combined = with_resampling(_pixel(0.1), trace, declared=True)
    assert combined.score == 0.1
    assert combined.verdict == "inconclusive"
    assert any(f.kind == "global" for f in combined.findings)


def test_hole_finding_sits_in_the_middle_of_its_slices() -> None:
    """CT-GAN's touch-up cube is centred on the edit: the hole's middle slice is reported."""
    from medforensics.detect.resampling_map import TraceMap, _finding

    region = np.zeros((12, 8, 8), dtype=bool)
    region[3:10, 2:5, 2:5] = True
    region[3, 2:5, 2:8] = True  # the largest slice is not the middle one
    tmap = TraceMap(
        coherence=np.full(region.shape, 0.05), expected=np.full(region.shape, 0.3), sigma=0.03
    )
    finding = _finding(region, tmap, series_score=1.0)
    assert finding.slice == 6
    assert (finding.row, finding.col) == (28, 28)
    assert finding.score == pytest.approx(0.8333, abs=1e-3)
