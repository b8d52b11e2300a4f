"""Typed objects that flow out of the readers: one ``ImageVolume`` per series or image."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

#: how an input was stored; part of the scan contract
InputKind = Literal["dicom-series", "dicom-multiframe", "nifti", "image"]


@dataclass(frozen=True)
class SliceRef:
    """Where one slice of a volume came from.

    Attributes:
        source_file: the file the slice was read from (inside a temporary folder for zip members).
        sop_instance_uid: the DICOM SOPInstanceUID, None for non-DICOM inputs.
        frame: 0-based frame number inside a multi-frame DICOM or multi-page TIFF, else None.
        member: the zip member name when the slice came from a zip archive.
    """

    source_file: Path
    sop_instance_uid: str | None = None
    frame: int | None = None
    member: str | None = None


#: X-ray projection modalities (radiographs): attenuation adds along each ray, one image a file
RADIOGRAPH_MODALITIES = ("CR", "DX", "MG", "RF", "XA", "PX", "IO")
#: what radiograph models take: the above plus ``OT``, the modality of PNG/JPEG/TIFF inputs,
#: which carry none and are most often radiographs
PROJECTION_MODALITIES = (*RADIOGRAPH_MODALITIES, "OT")


@dataclass
class ImageVolume:
    """One series or image, ready for analysis.

    ``pixels`` is always ``(slices, rows, cols)`` float32 in physical units: Hounsfield units for
    CT (rescale slope/intercept applied), stored values for every other modality. 2D images have
    one slice. Colour images are converted to luminance (and ``channels`` records the original).

    Attributes:
        input: the path exactly as the user gave it.
        kind: how the data was stored (see ``InputKind``).
        modality: DICOM modality code (``CT``, ``MR``, ``CR``, ``DX``...) or ``OT`` when unknown.
        pixels: the pixel array, ``(slices, rows, cols)`` float32.
        spacing: ``(slice, row, col)`` spacing in mm; NaN where unknown.
        slices: one ``SliceRef`` per slice, in the order of ``pixels``.
        row_direction: unit vector (patient coordinates) of increasing column index, or None.
        col_direction: unit vector of increasing row index, or None.
        positions: ``(slices, 3)`` ImagePositionPatient of each slice, or None.
        series_uid: SeriesInstanceUID for DICOM, else None.
        study_uid: StudyInstanceUID for DICOM, else None.
        transfer_syntax: transfer syntax UID(s) seen in the series.
        bits_stored: BitsStored (DICOM) or bit depth of the source image.
        channels: samples per pixel of the source (1 gray, 3 RGB).
        attributes: a few descriptive header values (manufacturer, kernel, description...).
        problems: non-fatal issues found while reading (gaps, duplicate positions...).
    """

    input: str
    kind: InputKind
    modality: str
    pixels: np.ndarray
    spacing: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    slices: tuple[SliceRef, ...] = ()
    row_direction: tuple[float, float, float] | None = None
    col_direction: tuple[float, float, float] | None = None
    positions: np.ndarray | None = None
    series_uid: str | None = None
    study_uid: str | None = None
    transfer_syntax: tuple[str, ...] = ()
    bits_stored: int | None = None
    channels: int = 1
    attributes: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.pixels.ndim != 3:
            raise ValueError(f"pixels must be (slices, rows, cols), got shape {self.pixels.shape}")
        if self.slices and len(self.slices) != self.pixels.shape[0]:
            raise ValueError(
                f"{len(self.slices)} slice references for {self.pixels.shape[0]} slices"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(slices, rows, cols)``."""
        s, r, c = self.pixels.shape
        return int(s), int(r), int(c)

    @property
    def is_volume(self) -> bool:
        return self.shape[0] > 1

    @property
    def is_projection(self) -> bool:
        """True for radiographs and other 2D projection images (X-ray physics: attenuation
        adds): a projection modality, or a single image of no tomographic modality."""
        return self.modality in PROJECTION_MODALITIES or (
            self.modality not in ("CT", "MR", "PT", "NM", "US") and not self.is_volume
        )

    @property
    def source_files(self) -> list[Path]:
        """Distinct source files, in slice order."""
        seen: dict[Path, None] = {}
        for ref in self.slices:
            seen.setdefault(ref.source_file, None)
        return list(seen)

    def sop_instance_uid(self, slice_index: int) -> str | None:
        if not self.slices:
            return None
        return self.slices[slice_index].sop_instance_uid


@dataclass(frozen=True)
class LoadError:
    """An input, or part of one, that could not be read.

    Attributes:
        input: the path as the user gave it.
        path: the file or folder the problem is in (may be inside ``input``).
        message: what went wrong and what to do, for a person.
    """

    input: str
    path: str
    message: str

    def __str__(self) -> str:
        if self.path and self.path != self.input:
            return f"{self.path}: {self.message}"
        return f"{self.input}: {self.message}"


class ReadError(Exception):
    """Raised by a reader when a file cannot be analysed; the message is for people."""

    def __init__(self, path: str | Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)
        self.message = message
