"""The ``signature`` detector and its place in ``auto``: broken signatures are findings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medforensics.detect import create_detector
from medforensics.detect.auto import AutoDetector
from medforensics.detect.base import Detector
from medforensics.detect.signature import SignatureDetector
from medforensics.detect.types import Detection, Finding
from medforensics.io.loader import load_paths
from medforensics.io.types import ImageVolume
from medforensics.provenance.sign import sign_file
from tests.conftest import WrittenSeries, write_series
from tests.provenance import Pki, edit, flip_pixel, make_pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki", name="CT scanner 1")


@pytest.fixture
def series(tmp_path: Path) -> WrittenSeries:
    return write_series(tmp_path / "series", n_slices=4, shuffle=False)


def _volume(folder: Path) -> ImageVolume:
    volumes = [v for v in load_paths([folder]) if isinstance(v, ImageVolume)]
    assert len(volumes) == 1
    return volumes[0]


def _sign_all(series: WrittenSeries, pki: Pki) -> None:
    for path in series.paths:
        sign_file(path, path, pki.signer)


def test_registered_by_name() -> None:
    assert isinstance(create_detector("signature"), SignatureDetector)


def test_valid_signatures_say_who_signed(series: WrittenSeries, pki: Pki) -> None:
    _sign_all(series, pki)
    detection = SignatureDetector(trust=str(pki.ca_cert_path)).detect(_volume(series.folder))
    assert detection.verdict == "authentic" and detection.score == 0.0
    assert detection.findings == []
    assert detection.notes[0] == "4 of 4 files carry valid signatures (signer CT scanner 1)"


def test_a_broken_signature_is_a_finding_on_its_slice(series: WrittenSeries, pki: Pki) -> None:
    _sign_all(series, pki)
    flip_pixel(series.paths[2])
    volume = _volume(series.folder)
    detection = SignatureDetector().detect(volume)
    assert detection.verdict == "manipulated" and detection.score == 1.0
    [finding] = detection.findings
    assert finding.kind == "signature" and finding.score == 1.0
    assert volume.slices[finding.slice].source_file.name == series.paths[2].name
    _, rows, cols = volume.shape
    assert (finding.row, finding.col) == (rows // 2, cols // 2)
    assert "Pixel Data changed" in finding.detail
    assert detection.notes[0] == "1 of 4 files changed after they were signed"


def test_a_changed_header_names_the_attribute(series: WrittenSeries, pki: Pki) -> None:
    _sign_all(series, pki)
    edit(series.paths[0], PatientID="SOMEONE-ELSE")
    [finding] = SignatureDetector().detect(_volume(series.folder)).findings
    assert "signed attribute (0010,0020) PatientID changed" in finding.detail


def test_unsigned_files_are_not_assessed(series: WrittenSeries) -> None:
    detection = SignatureDetector().detect(_volume(series.folder))
    assert detection.verdict == "inconclusive" and detection.findings == []
    assert detection.notes == ["unsigned: 4 of 4 files carry no digital signature"]


def test_untrusted_signer_is_not_proof_either_way(
    series: WrittenSeries, pki: Pki, tmp_path: Path
) -> None:
    _sign_all(series, pki)
    stranger = make_pki(tmp_path / "stranger", name="Stranger")
    detection = SignatureDetector(trust=str(stranger.ca_cert_path)).detect(_volume(series.folder))
    assert detection.verdict == "inconclusive" and detection.findings == []
    assert "cannot be relied on: untrusted" in detection.notes[0]


def test_non_dicom_inputs_are_not_assessed() -> None:
    volume = ImageVolume(input="x.png", kind="image", modality="OT",
                         pixels=np.zeros((1, 8, 8), np.float32))  # fmt: skip
    detection = SignatureDetector().detect(volume)
    assert detection.verdict == "inconclusive"
    assert detection.notes == ["signatures apply to DICOM files only"]


class _Pixels(Detector):
    name = "pixels"

    def detect(self, volume: ImageVolume) -> Detection:
        finding = Finding("local", 0.2, 0, 5, 5)
        return Detection("pixels", 0.2, "authentic", [finding], notes=["pixel model"])


@pytest.fixture
def auto(monkeypatch: pytest.MonkeyPatch) -> AutoDetector:
    detector = AutoDetector(metadata=False)
    stubs = {"ct-local": _Pixels(), "copy-move": _Pixels(), "signature": SignatureDetector()}
    monkeypatch.setattr(detector, "_get", lambda name: stubs.get(name))
    return detector


def test_auto_makes_a_broken_signature_the_verdict(
    auto: AutoDetector, series: WrittenSeries, pki: Pki
) -> None:
    _sign_all(series, pki)
    flip_pixel(series.paths[1])
    detection = auto.detect(_volume(series.folder))
    assert detection.verdict == "manipulated" and detection.score == 1.0
    assert detection.findings[0].kind == "signature"
    assert any(f.kind == "local" for f in detection.findings)
    assert "signature: 1 of 4 files changed after they were signed" in detection.notes


def test_auto_keeps_the_pixel_verdict_for_valid_and_unsigned_files(
    auto: AutoDetector, series: WrittenSeries, pki: Pki, tmp_path: Path
) -> None:
    unsigned = auto.detect(_volume(series.folder))
    assert unsigned.verdict == "authentic" and unsigned.score == 0.2
    assert "signature: unsigned: 4 of 4 files carry no digital signature" in unsigned.notes
    _sign_all(series, pki)
    signed = auto.detect(_volume(series.folder))
    assert signed.verdict == "authentic" and signed.score == 0.2
    assert [f.kind for f in signed.findings] == ["local", "local"]
    assert any("carry valid signatures" in note for note in signed.notes)
