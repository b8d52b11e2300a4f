"""All DICOM objects of one result, built in memory before anything is written."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
from pydicom.dataset import Dataset

from medforensics.io.types import ImageVolume
from medforensics.report.dicom.encapsulated import build_encapsulated_pdf
from medforensics.report.dicom.sc import build_sc
from medforensics.report.dicom.seg import build_seg
from medforensics.report.dicom.sources import SegmentationNotPossible, device_of
from medforensics.report.dicom.sr import build_sr
from medforensics.scan import ScanResult


def build_objects(
    volume: ImageVolume,
    result: ScanResult,
    heat: np.ndarray,
    overlay_rgb: np.ndarray,
    overlay_slice: int,
    pdf: bytes | None,
    datasets: list[Dataset],
    model: Mapping[str, object],
) -> tuple[dict[str, Dataset], list[str]]:
    """The objects by key (``sr``, ``seg``, ``sc``, ``pdf``) and why any was left out."""
    device = device_of(model, fallback_name=result.detector)
    with warnings.catch_warnings():
        # the source's own PatientName is copied as it is (e.g. "C3N-00247"): highdicom's
        # advice to restructure it is not the user's business and must not clutter the terminal
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person")
        objects: dict[str, Dataset] = {
            "sr": build_sr(volume, result, datasets, device),
            "sc": build_sc(volume, overlay_rgb, overlay_slice, datasets, device),
        }
        left_out = []
        try:
            objects["seg"] = build_seg(volume, heat, datasets, device)
        except SegmentationNotPossible as exc:
            left_out.append(f"no DICOM SEG written: {exc}")
        if pdf is not None:
            objects["pdf"] = build_encapsulated_pdf(volume, pdf, datasets, device)
    return objects, left_out
