"""The default ``auto`` detector: routing by modality, combining answers, metadata alerts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medforensics.detect.auto import AutoDetector, combine
from medforensics.detect.base import Detector
from medforensics.detect.types import Detection, Finding
from medforensics.io.types import ImageVolume
from medforensics.samples.phantom import chest_ct_phantom


def _volume(modality: str, kind: str = "dicom-series") -> ImageVolume:
    pixels = np.rint(chest_ct_phantom(n_slices=3, size=128, rng=np.random.default_rng(0)))
    return ImageVolume(
        input="x", kind=kind, modality=modality, pixels=pixels.astype(np.float32),
        spacing=(2.0, 0.7, 0.7),
    )  # fmt: skip


def _detection(name: str, score: float, verdict: str, finding: float) -> Detection:
    return Detection(
        detector=name,
        score=score,
        verdict=verdict,  # type: ignore[arg-type]
        findings=[Finding("local", finding, 0, 10, 10)],
        anomaly_map=np.full((1, 2, 2), score, np.float32),
        map_stride=8 if name == "a" else 16,
    )


def test_combine_takes_the_most_suspicious_answer() -> None:
    a = _detection("a", 0.3, "authentic", 0.3)
    b = _detection("b", 0.7, "inconclusive", 0.6)
    both = combine([a, b])
    assert both.detector == "a+b"
    assert both.score == 0.7 and both.verdict == "inconclusive"
    assert [f.score for f in both.findings] == [0.6, 0.3]
    assert both.map_stride == 16
    assert combine([a, _detection("c", 0.2, "manipulated", 0.1)]).verdict == "manipulated"
    assert combine([a]) is a


class _Fixed(Detector):
    name = "fixed"

    def __init__(self, label: str, score: float, verdict: str, kind: str = "local") -> None:
        self.label, self.score, self.verdict, self.kind = label, score, verdict, kind

    def detect(self, volume: ImageVolume) -> Detection:
        finding = Finding(self.kind, self.score, 0, 1, 1, detail=self.label)
        return Detection(self.label, self.score, self.verdict, [finding])  # type: ignore[arg-type]


@pytest.fixture
def auto(monkeypatch: pytest.MonkeyPatch) -> AutoDetector:
    detector = AutoDetector()
    stubs = {
        "ct-local": _Fixed("ct-local", 0.2, "authentic"),
        "noise-residual": _Fixed("noise-residual", 0.3, "authentic"),
        "xr-local": _Fixed("xr-local", 0.4, "authentic"),
        "mr-local": _Fixed("mr-local", 0.1, "authentic"),
        "synthetic-2d": _Fixed("synthetic-2d", 0.7, "manipulated", kind="global"),
        "copy-move": _Fixed("copy-move", 0.028, "authentic"),
        "metadata": _Fixed("metadata", 0.02, "authentic", kind="metadata"),
    }
    monkeypatch.setattr(detector, "_get", lambda name: stubs.get(name))
    detector.stubs = stubs  # type: ignore[attr-defined]
    return detector


def test_each_modality_goes_to_its_models_and_others_to_the_fallback(
    auto: AutoDetector,
) -> None:
    assert auto.detect(_volume("CT")).detector == "ct-local+copy-move"
    mr = auto.detect(_volume("MR"))
    assert mr.detector == "noise-residual+copy-move+synthetic-2d"
    assert mr.verdict == "manipulated" and mr.score == 0.7  # the more suspicious answer wins
    for modality in ("CR", "DX", "OT"):  # OT: PNG/JPEG/TIFF, most often radiographs
        assert auto.detect(_volume(modality)).detector == "noise-residual+copy-move+synthetic-2d"
    assert auto.detect(_volume("US")).detector == "noise-residual"
    # a site's own radiograph model goes in through the routes
    site = AutoDetector(routes={"DX": ("xr-local", "synthetic-2d")})
    site._get = auto._get  # type: ignore[method-assign]
    assert site.detect(_volume("DX")).detector == "xr-local+synthetic-2d"


def test_a_route_with_one_model_missing_uses_the_other_and_says_so(
    auto: AutoDetector,
) -> None:
    del auto.stubs["synthetic-2d"]  # type: ignore[attr-defined]
    result = auto.detect(_volume("MR"))
    assert result.detector == "noise-residual+copy-move"
    assert any("synthetic-2d unavailable" in note for note in result.notes)


def test_strong_metadata_finding_makes_authentic_inconclusive(auto: AutoDetector) -> None:
    auto.stubs["metadata"] = _Fixed("metadata", 0.75, "manipulated", kind="metadata")  # type: ignore[attr-defined]
    result = auto.detect(_volume("CT"))
    assert result.verdict == "inconclusive"
    assert any(f.kind == "metadata" for f in result.findings)
    assert result.score == 0.2  # the pixel models' score is kept
    # not DICOM: no header to check
    assert auto.detect(_volume("CT", kind="nifti")).verdict == "authentic"


def test_missing_model_falls_back_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    detector = AutoDetector(routes={"CT": ("no-such-detector",)}, metadata=False)
    result = detector.detect(_volume("CT"))
    assert result.detector == "noise-residual"
    assert "no-such-detector unavailable" in result.notes[0]


def test_a_ct_localizer_takes_the_radiograph_route(auto: AutoDetector) -> None:
    scout = dataclasses.replace(
        _volume("CT"), attributes={"ImageType": "ORIGINAL\\PRIMARY\\LOCALIZER\\CT_SOM5 TOP"}
    )
    result = auto.detect(scout)
    assert result.detector == "noise-residual+copy-move+synthetic-2d"
    assert any("localizer" in note for note in result.notes)
    axial = dataclasses.replace(_volume("CT"), attributes={"ImageType": "ORIGINAL\\PRIMARY\\AXIAL"})
    assert auto.detect(axial).detector == "ct-local+copy-move"
