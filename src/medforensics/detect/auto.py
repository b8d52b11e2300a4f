"""``auto``: the default detector — routes each image to the model built for it.

* CT → ``ct-local`` (the trained local forensic network);
* every other modality → ``noise-residual`` (training-free noise consistency) until a model
  trained for that modality is shipped.

DICOM inputs also go through the ``metadata`` consistency checks. Their findings are added to
the result; they never lower a verdict, and a strong one (score ≥ 0.5) turns an ``authentic``
verdict into ``inconclusive`` with a note, because a header inconsistency is a reason for a person
to look but not, by itself, proof that pixels were changed. The score stays the pixel model's
calibrated probability. The result names the model that answered.
"""

from __future__ import annotations

from typing import Any

from medforensics.detect.base import Detector
from medforensics.detect.registry import create_detector, register_detector
from medforensics.detect.types import Detection
from medforensics.io.types import ImageVolume

#: modality → detector name; anything else uses FALLBACK
ROUTES = {"CT": "ct-local"}
FALLBACK = "noise-residual"
#: metadata findings at or above this score make an authentic verdict inconclusive
METADATA_ALERT = 0.5


@register_detector
class AutoDetector(Detector):
    """Modality-aware routing to the right model, plus DICOM consistency checks."""

    name = "auto"
    modalities = ()

    def __init__(self, routes: dict[str, str] | None = None, metadata: bool = True) -> None:
        self.routes = {**ROUTES, **(routes or {})}
        self.use_metadata = metadata
        self._cache: dict[str, Detector] = {}
        self._unavailable: dict[str, str] = {}

    def _get(self, name: str) -> Detector | None:
        if name in self._cache:
            return self._cache[name]
        if name in self._unavailable:
            return None
        try:
            detector = create_detector(name)
        except (KeyError, FileNotFoundError, ValueError) as exc:
            self._unavailable[name] = str(exc)
            return None
        self._cache[name] = detector
        return detector

    def route(self, volume: ImageVolume) -> tuple[Detector, list[str]]:
        """The detector for ``volume`` and notes on any fallback taken."""
        notes: list[str] = []
        wanted = self.routes.get(volume.modality, FALLBACK)
        detector = self._get(wanted)
        if detector is None or not detector.supports(volume):
            if detector is None:
                notes.append(f"{wanted} unavailable ({self._unavailable[wanted]}); used {FALLBACK}")
            detector = self._get(FALLBACK)
            if detector is None:
                raise RuntimeError(f"no detector available: {self._unavailable.get(FALLBACK)}")
        return detector, notes

    def detect(self, volume: ImageVolume) -> Detection:
        primary, notes = self.route(volume)
        detection = primary.detect(volume)
        detection.notes = notes + detection.notes
        if self.use_metadata and volume.kind.startswith("dicom"):
            checker = self._get("metadata")
            if checker is not None:
                extra = checker.detect(volume)
                detection.findings = detection.findings + list(extra.findings)
                strong = [f for f in extra.findings if f.score >= METADATA_ALERT]
                if strong and detection.verdict == "authentic":
                    detection.verdict = "inconclusive"
                    detection.notes.append(
                        "pixels look authentic, but the DICOM header has inconsistencies "
                        "(see the metadata findings): a person should check the file's history"
                    )
        return detection

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"name": self.name, "routes": dict(self.routes)}
        for modality, name in sorted(self.routes.items()):
            detector = self._get(name)
            if detector is not None:
                described[modality] = detector.describe()
        return described
