"""DICOM results for PACS, in the forms the IHE AI Results profile expects.

``write_dicom_outputs`` writes, each in a new series of the source's study:

- ``sr``: a Comprehensive 3D SR, TID 1500 measurement report (score, verdict, findings);
- ``seg``: the manipulation map as a FRACTIONAL probability Segmentation (left out, with a
  logged reason, for sources a SEG cannot reference: colour or classic multi-frame images);
- ``sc``: the overlay of the most suspicious slice as an RGB Secondary Capture;
- ``pdf``: the PDF report as Encapsulated PDF (when PDF bytes are given).

Concepts without standard codes use the private scheme ``99MEDFOR`` (see ``codes`` and
``docs/dicom-outputs.md``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from medforensics.io.types import ImageVolume
from medforensics.report.dicom.sources import (
    DicomOutputError,
    SegmentationNotPossible,
    read_sources,
)
from medforensics.scan import ScanResult
from medforensics.utils.optional import MissingExtraError, require

__all__ = [
    "DicomOutputError",
    "SegmentationNotPossible",
    "read_sr_findings",
    "write_dicom_outputs",
]

logger = logging.getLogger(__name__)

#: file name suffix of each output
_SUFFIXES = {"sr": "sr", "seg": "seg", "sc": "overlay-sc", "pdf": "report-pdf"}


def _require_highdicom() -> None:
    """highdicom is the ``dicom-out`` extra; without it, a DicomOutputError that says so."""
    try:
        require("highdicom", "DICOM results (SR, SEG, Secondary Capture, Encapsulated PDF)")
    except MissingExtraError as exc:
        raise DicomOutputError(str(exc)) from exc


def _stem(volume: ImageVolume) -> str:
    """A file-system-safe stem from the series UID (UIDs hold digits and dots only)."""
    uid = volume.series_uid or (volume.slices[0].sop_instance_uid if volume.slices else None)
    return f"series-{uid}" if uid else "series"


def _save(dataset: Dataset, out_dir: Path, stem: str, key: str) -> Path:
    path = out_dir / f"{stem}.{_SUFFIXES[key]}.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path


def read_sr_findings(path: Path) -> dict[str, Any]:
    """Score, verdict and findings of an SR written by ``write_dicom_outputs``.

    Returns:
        ``{"score", "verdict", "findings": [{kind, score, slice, row, col, sop_instance_uid,
        frame?, radius?}]}``: ``slice`` is the 0-based slice index of the analysed volume,
        ``frame`` the 0-based frame of a multi-frame source, ``radius`` in pixels.
    """
    _require_highdicom()
    from medforensics.report.dicom.sr import read_sr_findings as read

    return read(path)


def write_dicom_outputs(
    volume: ImageVolume,
    result: ScanResult,
    heat: np.ndarray,
    overlay_rgb: np.ndarray,
    overlay_slice: int,
    pdf: bytes | None,
    out_dir: Path,
    *,
    model: Mapping[str, object],
    notes: list[str] | None = None,
) -> dict[str, Path]:
    """Write the DICOM results of one analysed series into ``out_dir``.

    Args:
        volume: the analysed volume; must come from DICOM files that are still readable.
        result: the scan result of ``volume`` (score, verdict, findings).
        heat: manipulation map ``(slices, rows, cols)`` float32 in [0, 1] at image resolution.
        overlay_rgb: uint8 ``(rows, cols, 3)`` overlay of slice ``overlay_slice``.
        overlay_slice: 0-based slice index the overlay shows.
        pdf: the PDF report, or None to write no Encapsulated PDF.
        out_dir: folder to write into (created).
        model: ``detector.describe()``: name, version, checkpoint_sha256...
        notes: when given, why an output was left out (a source that cannot carry a SEG) is
            appended here, for the report; it is logged as a warning either way.

    Returns:
        The files written, by key: ``sr``, ``seg`` (unless the source cannot carry a SEG),
        ``sc`` and ``pdf`` (only when ``pdf`` is given).

    Raises:
        DicomOutputError: the volume is not DICOM, a source file cannot be read, or an input
            does not match the volume; nothing is written then.
    """
    datasets = read_sources(volume)
    _require_highdicom()
    from medforensics.report.dicom.build import build_objects

    try:
        objects, left_out = build_objects(
            volume, result, heat, overlay_rgb, overlay_slice, pdf, datasets, model
        )
    except DicomOutputError:
        raise
    except (ValueError, TypeError, AttributeError) as exc:
        # highdicom refuses sources it cannot reference (RT Dose, a SEG, a single-frame SOP
        # class that declares frames...): say so for the input rather than fail obscurely
        raise DicomOutputError(
            f"{volume.input}: DICOM results cannot reference these source images: {exc}"
        ) from exc
    for reason in left_out:
        logger.warning("%s", reason)
        if notes is not None:
            notes.append(reason)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = _stem(volume)
    return {key: _save(objects[key], out_dir, stem, key) for key in _SUFFIXES if key in objects}
