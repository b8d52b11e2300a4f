"""Detectors behind one interface, a registry, and calibration."""

from __future__ import annotations

from medforensics.detect.base import Detector
from medforensics.detect.registry import create_detector, list_detectors, register_detector
from medforensics.detect.types import Detection, Finding, OperatingPoint, Verdict

__all__ = [
    "Detection",
    "Detector",
    "Finding",
    "OperatingPoint",
    "Verdict",
    "create_detector",
    "list_detectors",
    "register_detector",
]
