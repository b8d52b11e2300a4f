"""Lossy-compression evidence (``detect.compression``) and what ``auto`` makes of it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medforensics.detect import Detection, Finding, create_detector
from medforensics.detect.auto import LOSSY_SCORE_CAP, with_compression
from medforensics.detect.compression import (
    WAVELET_FLOOR,
    Compression,
    assess,
    declared_lossy,
    wavelet_level,
)
from medforensics.io.types import ImageVolume
from medforensics.samples import chest_ct_phantom
from medforensics.tamper.launder import apply_laundering


def _volume(pixels: np.ndarray, **attributes: str) -> ImageVolume:
    return ImageVolume(
        input="phantom",
        kind="dicom-series",
        modality="CT",
        pixels=pixels,
        spacing=(2.5, 0.7, 0.7),
        attributes=dict(attributes),
    )


@pytest.fixture(scope="module")
def acquired() -> ImageVolume:
    """Integer HU, as read from a DICOM file."""
    return _volume(np.rint(chest_ct_phantom(3, 256, np.random.default_rng(11))).astype(np.float32))


def _jpeg2000(volume: ImageVolume, rate: float) -> ImageVolume:
    steps = [{"op": "jpeg2000", "rate": rate}]
    pixels = apply_laundering(volume.pixels, volume, steps, np.random.default_rng(0))
    return dataclasses.replace(volume, pixels=pixels)


def test_acquired_noise_is_far_above_the_floor(acquired: ImageVolume) -> None:
    level = wavelet_level(acquired)
    assert level is not None and level > 2 * WAVELET_FLOOR
    assert not assess(acquired).lossy


@pytest.mark.parametrize("rate", [10.0, 60.0, 300.0])
def test_jpeg2000_leaves_only_rounding_on_its_own_grid(acquired: ImageVolume, rate: float) -> None:
    compressed = _jpeg2000(acquired, rate)
    level = wavelet_level(compressed)
    assert level is not None and level <= WAVELET_FLOOR
    evidence = assess(compressed)
    assert evidence.wavelet_trace and evidence.lossy and not evidence.declared
    assert "JPEG 2000" in " ".join(evidence.reasons())


def test_level_is_in_stored_units(acquired: ImageVolume) -> None:
    # stored = HU / 0.25: the same noise is four times larger in stored units
    fine = dataclasses.replace(acquired, attributes={"RescaleSlope": "0.25"})
    plain = wavelet_level(acquired)
    scaled = wavelet_level(fine)
    assert plain is not None and scaled == pytest.approx(4 * plain)


def test_header_declarations(acquired: ImageVolume) -> None:
    assert not declared_lossy(acquired)
    assert declared_lossy(dataclasses.replace(acquired, attributes={"LossyImageCompression": "01"}))
    assert not declared_lossy(
        dataclasses.replace(acquired, attributes={"LossyImageCompression": "00"})
    )
    assert declared_lossy(
        dataclasses.replace(acquired, transfer_syntax=("1.2.840.10008.1.2.4.91",))
    )
    assert not declared_lossy(
        dataclasses.replace(acquired, transfer_syntax=("1.2.840.10008.1.2.4.90",))
    )


def test_not_measured_where_it_means_nothing(acquired: ImageVolume) -> None:
    assert wavelet_level(dataclasses.replace(acquired, modality="MR")) is None
    air = dataclasses.replace(acquired, pixels=np.full_like(acquired.pixels, -1000.0))
    assert wavelet_level(air) is None


def _flagged() -> Detection:
    finding = Finding(kind="local", score=0.93, slice=0, row=10, col=10, detail="texture")
    return Detection(
        detector="ct-local+classical", score=0.93, verdict="manipulated", findings=[finding]
    )


def test_texture_flag_on_lossy_pixels_is_not_proof() -> None:
    out = with_compression(_flagged(), Compression(declared=True))
    assert out.verdict == "inconclusive"
    assert out.score == LOSSY_SCORE_CAP
    assert out.findings  # where the models looked is still shown
    assert any("not proof" in note for note in out.notes)


def test_no_evidence_changes_nothing() -> None:
    out = with_compression(_flagged(), Compression(wavelet_level=3.0))
    assert (out.verdict, out.score, out.notes) == ("manipulated", 0.93, [])


def test_authentic_verdict_stays_with_a_note() -> None:
    clean = Detection(detector="ct-local+classical", score=0.04, verdict="authentic")
    out = with_compression(clean, Compression(block_grid=True))
    assert (out.verdict, out.score) == ("authentic", 0.04)
    assert any("JPEG 8x8 block grid" in note for note in out.notes)


def test_auto_reads_the_evidence(acquired: ImageVolume) -> None:
    auto = create_detector("auto")
    plain = auto.detect(acquired)
    assert not any("lossy compression" in note for note in plain.notes)
    compressed = auto.detect(_jpeg2000(acquired, 60.0))
    assert any("lossy compression" in note for note in compressed.notes)
    assert compressed.verdict != "manipulated"
