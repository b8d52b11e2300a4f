"""Write phantoms as real DICOM files with known geometry."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

_SOP_CLASS = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
}


def _frame_of_reference(study_uid: str) -> str:
    return study_uid + ".1" if len(study_uid) < 60 else generate_uid()


def _base_dataset(
    modality: str,
    study_uid: str,
    series_uid: str,
    patient_id: str,
    sop_uid: str,
    frame_uid: str | None = None,
) -> Dataset:
    sop_class = UID(_SOP_CLASS.get(modality, CTImageStorage))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    today = _dt.date(2024, 1, 15).strftime("%Y%m%d")
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid or _frame_of_reference(study_uid)
    ds.PatientName = "PHANTOM^CHEST"
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = today
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.Modality = modality
    ds.Manufacturer = "medforensics phantom"
    ds.ManufacturerModelName = "synthetic"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    return ds


def write_ct_series(
    hu_volume: np.ndarray,
    out_dir: str | Path,
    spacing: tuple[float, float, float] = (2.5, 0.7, 0.7),
    origin: Sequence[float] = (-180.0, -180.0, -100.0),
    patient_id: str = "PHANTOM-001",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uids: Sequence[str] | None = None,
    kernel: str = "STANDARD",
    file_order: Sequence[int] | None = None,
    modality: str = "CT",
) -> list[Path]:
    """Write an axial series, one file per slice, and return the paths in slice order.

    Args:
        hu_volume: ``(slices, rows, cols)`` in HU (CT) or stored values (MR).
        out_dir: folder to write into; created if missing.
        spacing: ``(slice, row, col)`` in mm.
        origin: ImagePositionPatient of slice 0.
        file_order: optional permutation for the file names, to test that readers sort by
            position, not by name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = _frame_of_reference(study_uid)  # one frame of reference for the whole series
    n = hu_volume.shape[0]
    order = list(file_order) if file_order is not None else list(range(n))
    intercept = -1024.0 if modality == "CT" else 0.0
    paths: list[Path] = []
    for z in range(n):
        sop_uid = sop_uids[z] if sop_uids is not None else generate_uid()
        ds = _base_dataset(modality, study_uid, series_uid, patient_id, sop_uid, frame_uid)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = z + 1
        ds.ImagePositionPatient = [
            float(origin[0]),
            float(origin[1]),
            float(origin[2]) + z * spacing[0],
        ]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.SliceLocation = float(origin[2]) + z * spacing[0]
        ds.SliceThickness = spacing[0]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.Rows, ds.Columns = int(hu_volume.shape[1]), int(hu_volume.shape[2])
        ds.PixelRepresentation = 1
        if modality == "CT":
            ds.RescaleIntercept = intercept
            ds.RescaleSlope = 1.0
            ds.RescaleType = "HU"
            ds.KVP = 120
            ds.ConvolutionKernel = kernel
        stored = np.rint(hu_volume[z] - intercept).clip(-32768, 32767).astype(np.int16)
        ds.PixelData = stored.tobytes()
        path = out / f"IM{order[z] + 1:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_dicom_image(
    pixels: np.ndarray,
    path: str | Path,
    modality: str = "DX",
    patient_id: str = "PHANTOM-002",
    pixel_spacing: tuple[float, float] = (0.15, 0.15),
    transfer_syntax: UID = ExplicitVRLittleEndian,
) -> Path:
    """Write one 2D image (unsigned 16-bit) as a DICOM file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = pixels[0] if pixels.ndim == 3 else pixels
    ds = _base_dataset(modality, generate_uid(), generate_uid(), patient_id, generate_uid())
    ds.InstanceNumber = 1
    ds.Rows, ds.Columns = int(image.shape[0]), int(image.shape[1])
    ds.PixelRepresentation = 0
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelSpacing = list(pixel_spacing)
    ds.ImagerPixelSpacing = list(pixel_spacing)
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PixelData = np.rint(image).clip(0, 4095).astype(np.uint16).tobytes()
    if transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax)
    ds.save_as(path, enforce_file_format=True)
    return path
