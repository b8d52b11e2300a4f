"""The PDF report as an Encapsulated PDF instance (highdicom has no class for it; built here).

Patient and study come from the source; Source Instance Sequence lists the analysed images so a
PACS can link the document to them. Burned In Annotation is ``YES``: the PDF may name the patient
(reports made with ``--include-phi``), and de-identification tools must then treat it as such.
"""

from __future__ import annotations

import datetime as dt

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import EncapsulatedPDFStorage, ExplicitVRLittleEndian

from medforensics.io.types import ImageVolume
from medforensics.report.dicom import codes
from medforensics.report.dicom.sources import MANUFACTURER, SERIES_NUMBERS, Device, DicomOutputError

DOCUMENT_TITLE = "medforensics image manipulation analysis report"


def build_encapsulated_pdf(
    volume: ImageVolume, pdf: bytes, datasets: list[Dataset], device: Device
) -> hd.SOPClass:
    """An Encapsulated PDF instance holding ``pdf`` in the source's study."""
    if not pdf.startswith(b"%PDF-"):
        raise DicomOutputError(
            f"{volume.input}: the report bytes are not a PDF (they do not start with %PDF-)"
        )
    source = datasets[0]
    now = dt.datetime.now()
    document = hd.SOPClass(
        study_instance_uid=source.StudyInstanceUID,
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBERS["pdf"],
        sop_instance_uid=hd.UID(),
        sop_class_uid=EncapsulatedPDFStorage,
        instance_number=1,
        modality="DOC",
        manufacturer=MANUFACTURER,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        patient_id=source.get("PatientID"),
        patient_name=source.get("PatientName"),
        patient_birth_date=source.get("PatientBirthDate"),
        patient_sex=source.get("PatientSex") or None,
        accession_number=source.get("AccessionNumber"),
        study_id=source.get("StudyID"),
        study_date=source.get("StudyDate"),
        study_time=source.get("StudyTime"),
        referring_physician_name=source.get("ReferringPhysicianName"),
        coding_schemes=[codes.coding_scheme_identification()],
        series_description="medforensics manipulation report (PDF)",
        manufacturer_model_name=device.model_name,
        software_versions=device.software_version,
        device_serial_number=device.serial_number,
        content_date=now.date(),
        content_time=now.time(),
    )
    document.ConversionType = "WSD"
    document.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    document.BurnedInAnnotation = "YES"
    document.DocumentTitle = DOCUMENT_TITLE
    document.ConceptNameCodeSequence = DicomSequence(
        [hd.sr.CodedConcept.from_code(codes.MANIPULATION_REPORT)]
    )
    document.MIMETypeOfEncapsulatedDocument = "application/pdf"
    references = []
    for dataset in datasets:
        item = Dataset()
        item.ReferencedSOPClassUID = dataset.SOPClassUID
        item.ReferencedSOPInstanceUID = dataset.SOPInstanceUID
        references.append(item)
    document.SourceInstanceSequence = DicomSequence(references)
    # OB values must have even length; the pad byte is not part of the document
    document.EncapsulatedDocumentLength = len(pdf)
    document.EncapsulatedDocument = pdf + b"\x00" * (len(pdf) % 2)
    return document
