"""The overlay of the most suspicious slice as an RGB Secondary Capture, for viewers without SR.

Same patient and study as the source, a new series; Source Image Sequence points at the slice
(and frame) the overlay was drawn on, so a viewer can open the two side by side.
"""

from __future__ import annotations

import math

import highdicom as hd
import numpy as np
from highdicom.sc import SCImage
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from medforensics.io.types import ImageVolume
from medforensics.report.dicom import codes
from medforensics.report.dicom.sources import (
    MANUFACTURER,
    SERIES_NUMBERS,
    Device,
    DicomOutputError,
    source_for_slice,
)

#: patient axes and the letters of their positive / negative directions (PS3.3 C.7.6.1.1.1)
_AXIS_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))


def orientation_letters(direction: tuple[float, float, float] | None) -> str:
    """Patient Orientation letters of a direction, strongest component first ('' if unknown)."""
    if direction is None:
        return ""
    order = sorted(range(3), key=lambda axis: -abs(direction[axis]))
    return "".join(
        _AXIS_LETTERS[axis][0 if direction[axis] > 0 else 1]
        for axis in order
        if abs(direction[axis]) > 1e-3
    )


def _source_reference(source: Dataset, frame: int | None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if frame is not None:
        item.ReferencedFrameNumber = frame
    return item


def build_sc(
    volume: ImageVolume,
    overlay_rgb: np.ndarray,
    overlay_slice: int,
    datasets: list[Dataset],
    device: Device,
) -> SCImage:
    """An RGB Secondary Capture of ``overlay_rgb`` (uint8 ``(rows, cols, 3)``)."""
    if overlay_rgb.ndim != 3 or overlay_rgb.shape[2] != 3 or overlay_rgb.dtype != np.uint8:
        raise DicomOutputError(
            f"{volume.input}: the overlay must be uint8 (rows, cols, 3), got "
            f"{overlay_rgb.dtype} {overlay_rgb.shape}"
        )
    if not 0 <= overlay_slice < volume.shape[0]:
        raise DicomOutputError(
            f"{volume.input}: overlay slice {overlay_slice} is outside the {volume.shape[0]} slices"
        )
    source, frame = source_for_slice(volume, datasets, overlay_slice)
    same_grid = overlay_rgb.shape[:2] == volume.shape[1:]
    spacing = volume.spacing[1:]
    pixel_spacing = (
        (float(spacing[0]), float(spacing[1]))
        if same_grid and all(math.isfinite(v) and v > 0 for v in spacing)
        else None
    )
    image = SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=np.ascontiguousarray(overlay_rgb),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBERS["sc"],
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        pixel_spacing=pixel_spacing,  # type: ignore[arg-type]  # highdicom annotates int
        # replaced below: highdicom takes single letters only, DICOM allows oblique "LP"
        patient_orientation=("L", "P"),
        series_description="medforensics manipulation overlay (SC)",
        manufacturer_model_name=device.model_name,
        software_versions=device.software_version,
        device_serial_number=device.serial_number,
        coding_schemes=[codes.coding_scheme_identification()],
    )
    if same_grid:
        image.PatientOrientation = [
            orientation_letters(volume.row_direction),
            orientation_letters(volume.col_direction),
        ]
        if not all(image.PatientOrientation):
            image.PatientOrientation = list(source.get("PatientOrientation", []))
    else:
        image.PatientOrientation = []
    # General Series 2C: dciodvfy wants it present; empty when the source does not say
    image.Laterality = source.get("Laterality", "")
    image.ImageType = ["DERIVED", "SECONDARY"]
    image.BurnedInAnnotation = "NO"
    image.DerivationDescription = (
        f"slice {overlay_slice} in display window with the {device.model_name} "
        "manipulation map overlaid"
    )
    image.DerivationCodeSequence = DicomSequence(
        [hd.sr.CodedConcept.from_code(codes.MANIPULATION_OVERLAY)]
    )
    image.SourceImageSequence = DicomSequence([_source_reference(source, frame)])
    return image
