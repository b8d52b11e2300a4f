"""The manipulation map as a FRACTIONAL (probability) Segmentation on the source geometry.

One segment, "Manipulation probability map" (``MF-MAP``, ``99MEDFOR``), stored as 8-bit
fractions of 255. Frames are aligned with the source images: one SEG frame per source slice of a
single-frame series, per frame of a multi-frame source, or the one image of a projection
radiograph (CR/DX, which highdicom segments in the image plane without a frame of reference).
Frames where the map is zero everywhere are left out, as highdicom does by default.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from highdicom.seg import (
    Segmentation,
    SegmentationFractionalTypeValues,
    SegmentationTypeValues,
    SegmentDescription,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dcm_codes

from medforensics.io.types import ImageVolume
from medforensics.report.dicom import codes
from medforensics.report.dicom.sources import (
    MANUFACTURER,
    SERIES_NUMBERS,
    Device,
    DicomOutputError,
    SegmentationNotPossible,
)


def _segment(device: Device) -> SegmentDescription:
    algorithm = hd.AlgorithmIdentificationSequence(
        name=device.model_name,
        family=dcm_codes.cid7162.ArtificialIntelligence,
        version=device.model_version,
        source=MANUFACTURER,
        parameters=device.parameters or None,
    )
    return SegmentDescription(
        segment_number=1,
        segment_label="manipulation probability",
        segmented_property_category=codes.IMAGE_MANIPULATION,
        segmented_property_type=codes.MANIPULATION_MAP,
        algorithm_type="AUTOMATIC",
        algorithm_identification=algorithm,
    )


def clean_heat(volume: ImageVolume, heat: np.ndarray) -> np.ndarray:
    """``heat`` as float32 in [0, 1] with NaN as 0, checked against the volume's shape."""
    if heat.shape != volume.shape:
        raise DicomOutputError(
            f"{volume.input}: the manipulation map has shape {heat.shape}, the image "
            f"{volume.shape}; it must be at full image resolution (slices, rows, cols)"
        )
    return np.clip(np.nan_to_num(heat.astype(np.float32), nan=0.0), 0.0, 1.0)


def _frames_in_source_order(
    volume: ImageVolume, heat: np.ndarray, datasets: list[Dataset]
) -> np.ndarray:
    """The map rearranged so that index k matches source frame k (or source file k)."""
    if volume.kind == "dicom-multiframe":
        (source,) = datasets
        n_frames = int(source.get("NumberOfFrames", 1) or 1)
        frames = np.zeros((n_frames, *heat.shape[1:]), dtype=np.float32)
        for index, ref in enumerate(volume.slices):
            frames[ref.frame or 0] = heat[index]
        return frames
    if len(datasets) != heat.shape[0]:
        raise SegmentationNotPossible(
            f"{volume.input}: {heat.shape[0]} slices come from {len(datasets)} files; a SEG "
            "needs one source image per slice"
        )
    return heat


def _check_source(volume: ImageVolume, datasets: list[Dataset]) -> None:
    first = datasets[0]
    if int(first.get("SamplesPerPixel", 1) or 1) != 1:
        raise SegmentationNotPossible(
            f"{volume.source_files[0]}: colour source images cannot be segmented in DICOM SEG; "
            "the map is in the Secondary Capture overlay only"
        )
    geometry = {
        (ds.get("Rows"), ds.get("Columns"), ds.get("FrameOfReferenceUID")) for ds in datasets
    }
    if len(geometry) > 1:
        raise SegmentationNotPossible(
            f"{volume.input}: the slices differ in size or Frame of Reference UID "
            f"({len(geometry)} combinations); one SEG can only cover images that share both"
        )
    if volume.kind == "dicom-multiframe" and "PerFrameFunctionalGroupsSequence" not in first:
        raise SegmentationNotPossible(
            f"{volume.source_files[0]}: a classic multi-frame image without functional groups "
            "(plane positions) cannot be referenced frame by frame by a SEG"
        )


def build_seg(
    volume: ImageVolume, heat: np.ndarray, datasets: list[Dataset], device: Device
) -> Segmentation:
    """A FRACTIONAL PROBABILITY segmentation of ``heat`` (``(slices, rows, cols)``, [0, 1]).

    Raises:
        SegmentationNotPossible: the source cannot carry a SEG (colour, classic multi-frame...).
        DicomOutputError: the map does not match the image.
    """
    _check_source(volume, datasets)
    frames = _frames_in_source_order(volume, clean_heat(volume, heat), datasets)
    # a map that is zero everywhere still gets one (empty) frame per source image
    keep_all = not bool(np.any(frames >= 0.5 / 255))
    try:
        segmentation = Segmentation(
            source_images=datasets,
            pixel_array=frames,
            segmentation_type=SegmentationTypeValues.FRACTIONAL,
            segment_descriptions=[_segment(device)],
            series_instance_uid=hd.UID(),
            series_number=SERIES_NUMBERS["seg"],
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=device.model_name,
            software_versions=device.software_version,
            device_serial_number=device.serial_number,
            fractional_type=SegmentationFractionalTypeValues.PROBABILITY,
            content_description="probability of manipulation per pixel",
            content_label="MANIPULATION",
            series_description="medforensics manipulation map (SEG)",
            omit_empty_frames=not keep_all,
            coding_schemes=[codes.coding_scheme_identification()],
        )
    except (ValueError, AttributeError, TypeError, KeyError) as exc:
        raise SegmentationNotPossible(
            f"{volume.source_files[0]}: highdicom cannot build a SEG on this source "
            f"({volume.modality}, {volume.kind}): {exc}"
        ) from exc
    if not _has_plane_positions(segmentation):
        _as_projection(segmentation, datasets[0])
    return segmentation


def _has_plane_positions(segmentation: Segmentation) -> bool:
    groups = [
        *segmentation.get("SharedFunctionalGroupsSequence", []),
        *segmentation.get("PerFrameFunctionalGroupsSequence", []),
    ]
    return any("PlanePositionSequence" in group for group in groups)


def _as_projection(segmentation: Segmentation, source: Dataset) -> None:
    """Make a SEG of a projection image (CR/DX) valid without 3D geometry.

    A projection image has no plane position, so the SEG is tied to it pixel for pixel through
    the derivation references only. highdicom still copies a Frame of Reference (when the image
    has one) and Pixel Measures without a slice thickness; dciodvfy then asks for the thickness
    (Pixel Measures 1C) and highdicom's own reader refuses the file. A radiograph has no slice
    thickness to give, so both are dropped, and the image's Patient Orientation (General Image
    2C) is copied instead.
    """
    for keyword in ("FrameOfReferenceUID", "PositionReferenceIndicator"):
        if keyword in segmentation:
            delattr(segmentation, keyword)
    groups = [
        *segmentation.get("SharedFunctionalGroupsSequence", []),
        *segmentation.get("PerFrameFunctionalGroupsSequence", []),
    ]
    for group in groups:
        if "PixelMeasuresSequence" in group:
            del group.PixelMeasuresSequence
    segmentation.PatientOrientation = list(source.get("PatientOrientation", []))
