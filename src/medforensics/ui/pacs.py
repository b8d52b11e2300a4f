"""Pick a study from a PACS over DICOMweb (``medforensics ui --dicomweb URL``).

QIDO-RS lists studies and their series, WADO-RS retrieves the chosen series into the session's
folder; from there it is analysed like an upload. Nothing is stored back into the PACS from the
app (``medforensics pacs scan`` does that). Our own result objects and series without images
are listed with the reason they cannot be analysed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom

from medforensics.gateway.dicomweb import SERIES_FIELDS, DicomwebError
from medforensics.gateway.origin import is_non_image_sop_class, is_ours, series_skip_reason

#: QIDO attributes asked for at study level
STUDY_FIELDS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyDescription",
    "PatientID",
    "PatientName",
    "ModalitiesInStudy",
    "AccessionNumber",
)


@dataclass(frozen=True)
class StudyRow:
    """One study as QIDO-RS lists it."""

    study_uid: str
    date: str
    description: str
    patient_id: str
    patient_name: str
    modalities: str
    accession: str

    @property
    def label(self) -> str:
        parts = [self.date or "no date", self.patient_id or "no ID", self.description]
        return " · ".join(p for p in [*parts, self.modalities] if p)


@dataclass(frozen=True)
class SeriesRow:
    """One series of a study; ``skip`` says why it cannot be analysed (None when it can)."""

    series_uid: str
    modality: str
    description: str
    skip: str | None

    @property
    def label(self) -> str:
        text = f"{self.modality or '?'} · {self.description or 'no description'}"
        return f"{text} (not analysable: {self.skip})" if self.skip else text


def value(item: dict[str, Any], keyword: str) -> str:
    """A DICOM JSON attribute's first value as text ('' when absent)."""
    tag = f"{pydicom.datadict.tag_for_keyword(keyword):08X}"
    values = item.get(tag, {}).get("Value") or []
    if not values:
        return ""
    first = values[0]
    if isinstance(first, dict):  # person name
        return str(first.get("Alphabetic", ""))
    if keyword == "ModalitiesInStudy":
        return "/".join(str(v) for v in values)
    return str(first)


def search_studies(client: Any, patient_id: str = "", limit: int = 50) -> list[StudyRow]:
    """The studies the PACS lists (newest first), optionally for one PatientID (``*`` allowed)."""
    filters = {"PatientID": patient_id.strip()} if patient_id.strip() else None
    try:
        found = client.search_for_studies(
            search_filters=filters, fields=list(STUDY_FIELDS), limit=limit
        )
    except Exception as exc:
        raise DicomwebError(f"QIDO-RS study search failed: {exc}") from exc
    rows = [
        StudyRow(
            study_uid=value(item, "StudyInstanceUID"),
            date=value(item, "StudyDate"),
            description=value(item, "StudyDescription"),
            patient_id=value(item, "PatientID"),
            patient_name=value(item, "PatientName"),
            modalities=value(item, "ModalitiesInStudy"),
            accession=value(item, "AccessionNumber"),
        )
        for item in found
    ]
    rows = [row for row in rows if row.study_uid]
    return sorted(rows, key=lambda row: row.date, reverse=True)


def list_series(client: Any, study_uid: str) -> list[SeriesRow]:
    """The series of one study, each with the reason it cannot be analysed, if any."""
    try:
        found = client.search_for_series(study_uid, fields=list(SERIES_FIELDS))
    except Exception as exc:
        raise DicomwebError(f"QIDO-RS series search in study {study_uid} failed: {exc}") from exc
    rows = []
    for item in found:
        attributes = {keyword: value(item, keyword) or None for keyword in SERIES_FIELDS}
        rows.append(
            SeriesRow(
                series_uid=value(item, "SeriesInstanceUID"),
                modality=value(item, "Modality"),
                description=value(item, "SeriesDescription"),
                skip=series_skip_reason(attributes),
            )
        )
    return [row for row in rows if row.series_uid]


def fetch_series(client: Any, study_uid: str, series_uid: str, folder: Path) -> list[Path]:
    """Retrieve one series (WADO-RS) into ``folder``; instances without images are left out.

    Raises:
        DicomwebError: the retrieval failed, or no instance holds an image.
    """
    try:
        datasets = client.retrieve_series(study_uid, series_uid)
    except Exception as exc:
        raise DicomwebError(f"WADO-RS retrieval of series {series_uid} failed: {exc}") from exc
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, ds in enumerate(datasets):
        if is_ours(ds.get("Manufacturer"), ds.get("SeriesDescription")):
            continue
        if is_non_image_sop_class(ds.get("SOPClassUID")) or "PixelData" not in ds:
            continue
        if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
            ds.ensure_file_meta()
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        path = folder / f"{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    if not written:
        raise DicomwebError(f"series {series_uid} holds no image this tool can analyse")
    return written
