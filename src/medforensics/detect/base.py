"""The one interface every detector implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from medforensics.detect.types import Detection
from medforensics.io.types import ImageVolume


class Detector(ABC):
    """Scores one ``ImageVolume``.

    Subclasses set ``name`` (the registry key) and ``modalities`` (DICOM modality codes they were
    built for; empty means any). ``detect`` must not modify the volume.
    """

    name: ClassVar[str] = ""
    modalities: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def detect(self, volume: ImageVolume) -> Detection:
        """Return a calibrated score, verdict and findings for ``volume``."""

    def supports(self, volume: ImageVolume) -> bool:
        return not self.modalities or volume.modality in self.modalities

    def describe(self) -> dict[str, object]:
        """What a report should say about this detector (name, version, training data...)."""
        return {"name": self.name}
