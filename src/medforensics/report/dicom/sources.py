"""What every DICOM output needs: the source headers, the device that made it, the error type."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medforensics.__about__ import __version__
from medforensics.io.types import ImageVolume

MANUFACTURER = "medforensics"

#: series numbers of the outputs, far above those scanners use so they sort after the images
SERIES_NUMBERS = {"sr": 9901, "seg": 9902, "sc": 9903, "pdf": 9904}


class DicomOutputError(ValueError):
    """A DICOM result cannot be written for this input; the message says why, for people."""


class SegmentationNotPossible(DicomOutputError):
    """This kind of source image cannot carry a SEG; the other outputs are still written."""


@dataclass(frozen=True)
class Device:
    """The software that produced the results, as the DICOM objects name it.

    Attributes:
        model_name: the detector's registry name (``model["name"]``).
        model_version: the model's own version when it states one, else the software version.
        checkpoint_sha256: SHA-256 of the model checkpoint(s), when the detector loads one.
        software_version: the medforensics version.
    """

    model_name: str
    model_version: str
    checkpoint_sha256: tuple[str, ...] = ()
    software_version: str = __version__

    @property
    def name(self) -> str:
        return f"{MANUFACTURER} {self.software_version}"

    @property
    def uid(self) -> str:
        """A device UID that stays the same for the same software and model.

        A ``2.25`` UID (PS3.5 B.2) from a name-based UUID: the same device gets the same UID on
        every machine, so a PACS can group results by the model that made them.
        """
        name = "/".join(
            [MANUFACTURER, self.software_version, self.model_name, *self.checkpoint_sha256]
        )
        return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, name).int}"

    @property
    def serial_number(self) -> str:
        """The first checkpoint hash (64 hex characters fit LO) or ``no-checkpoint``."""
        return self.checkpoint_sha256[0] if self.checkpoint_sha256 else "no-checkpoint"

    @property
    def parameters(self) -> dict[str, str]:
        """Algorithm parameters for TID 4019 / the SEG algorithm identification."""
        return {
            f"checkpoint_sha256_{k + 1}"
            if len(self.checkpoint_sha256) > 1
            else "checkpoint_sha256": sha
            for k, sha in enumerate(self.checkpoint_sha256)
        }


def _find_values(mapping: object, key: str) -> list[str]:
    """Every string value of ``key`` in a nested mapping (the auto detector nests its parts)."""
    found: list[str] = []
    if isinstance(mapping, Mapping):
        for name, value in mapping.items():
            if name == key and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_find_values(value, key))
    elif isinstance(mapping, list | tuple):
        for value in mapping:
            found.extend(_find_values(value, key))
    return found


def device_of(model: Mapping[str, object], fallback_name: str | None = None) -> Device:
    """The ``Device`` described by ``detector.describe()``."""
    name = model.get("name")
    version = model.get("version")
    hashes = tuple(dict.fromkeys(_find_values(model, "checkpoint_sha256")))
    return Device(
        model_name=str(name) if name else (fallback_name or "unknown"),
        model_version=str(version) if version else __version__,
        checkpoint_sha256=hashes,
    )


def require_dicom(volume: ImageVolume) -> None:
    """Raise ``DicomOutputError`` unless the volume was read from DICOM files."""
    if not volume.kind.startswith("dicom") or not volume.slices:
        raise DicomOutputError(
            f"{volume.input}: this input is {volume.kind}, not DICOM; no DICOM results can be "
            "written for it (they must reference the source images by their DICOM UIDs)"
        )
    missing = [k for k, ref in enumerate(volume.slices) if not ref.sop_instance_uid]
    if missing:
        raise DicomOutputError(
            f"{volume.input}: slice {missing[0]} has no SOPInstanceUID; DICOM results must "
            "reference their source images by UID"
        )


def read_source(path: Path) -> Dataset:
    """The header of one source file (no pixel data), or ``DicomOutputError`` naming it."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, InvalidDicomError, ValueError, KeyError, TypeError) as exc:
        raise DicomOutputError(
            f"{path}: the source DICOM file can no longer be read ({exc}); the DICOM results "
            "copy patient and study from it, so keep the inputs in place until they are written"
        ) from exc


def read_sources(volume: ImageVolume) -> list[Dataset]:
    """Headers of the volume's distinct source files, in slice order."""
    require_dicom(volume)
    datasets = []
    for path in volume.source_files:
        dataset = read_source(path)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
            if not dataset.get(keyword):
                raise DicomOutputError(
                    f"{path}: the source file has no {keyword}; DICOM results cannot reference it"
                )
        datasets.append(dataset)
    return datasets


def source_for_slice(
    volume: ImageVolume, datasets: list[Dataset], slice_index: int
) -> tuple[Dataset, int | None]:
    """The source dataset of a slice and its 1-based frame number (None for single-frame)."""
    ref = volume.slices[slice_index]
    for dataset in datasets:
        if dataset.SOPInstanceUID == ref.sop_instance_uid:
            frame = ref.frame + 1 if ref.frame is not None and "NumberOfFrames" in dataset else None
            return dataset, frame
    raise DicomOutputError(
        f"{ref.source_file}: SOPInstanceUID {ref.sop_instance_uid} of slice {slice_index} is "
        "not in the file any more (was it rewritten after the scan?)"
    )
