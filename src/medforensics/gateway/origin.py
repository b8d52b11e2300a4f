"""Which objects the gateway and the PACS connector must not analyse: ours, and non-images.

Our result objects (SR, SEG, Secondary Capture overlay, Encapsulated PDF) carry Manufacturer
``medforensics`` and a SeriesDescription starting with ``medforensics``. Analysing them would
loop (an SR about an SR about...), so they are recognised by either tag, and every object of a
SOP class that holds no image (SR, SEG, PDF, presentation states, key objects) is skipped too.
"""

from __future__ import annotations

from collections.abc import Mapping

#: what report.dicom writes into Manufacturer
OUR_MANUFACTURER = "medforensics"
#: SOP class UID prefixes of objects that are not images to analyse
NON_IMAGE_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports, key object selection
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF / CDA / STL
    "1.2.840.10008.5.1.4.1.1.66",  # raw data, registration, segmentation, fiducials
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.481.",  # radiotherapy objects
    "1.2.840.10008.5.1.4.1.1.9.",  # waveforms
)
#: modalities of series that hold no images to analyse
NON_IMAGE_MODALITIES = frozenset(
    {"SR", "SEG", "DOC", "KO", "PR", "REG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "ECG"}
)


def is_ours(manufacturer: str | None, series_description: str | None = None) -> bool:
    """True for objects medforensics made (by Manufacturer or SeriesDescription)."""
    if (manufacturer or "").strip().lower() == OUR_MANUFACTURER:
        return True
    return (series_description or "").strip().lower().startswith(OUR_MANUFACTURER + " ")


def is_non_image_sop_class(sop_class_uid: str | None) -> bool:
    uid = (sop_class_uid or "").strip()
    return any(uid.startswith(prefix) for prefix in NON_IMAGE_SOP_PREFIXES)


def series_skip_reason(attributes: Mapping[str, str | None]) -> str | None:
    """Why a series (keyword → value: Manufacturer, SeriesDescription, Modality, SOPClassUID)
    must not be analysed, or None."""
    if is_ours(attributes.get("Manufacturer"), attributes.get("SeriesDescription")):
        return "a medforensics result object"
    modality = (attributes.get("Modality") or "").strip().upper()
    if modality in NON_IMAGE_MODALITIES:
        return f"modality {modality} holds no images"
    if is_non_image_sop_class(attributes.get("SOPClassUID")):
        return "its SOP class holds no image"
    return None
