"""What an MR series is: T1, T2, FLAIR, PD, or unknown, from its header.

The guess reads the series' names first (SeriesDescription, ProtocolName, SequenceName), then
its timing: repetition, echo and inversion time. The values come from the volume's attributes
when the reader kept them, else from the header of its first DICOM file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import pydicom

from medforensics.io.types import ImageVolume

#: T1C is T1-weighted after a contrast agent (an enhancing lesion is bright)
SEQUENCES = ("T1", "T1C", "T2", "FLAIR", "PD", "unknown")
#: header values the sequence guess and the study check read (volume attributes, else the file)
HEADER_KEYS = (
    "SeriesDescription",
    "ProtocolName",
    "SequenceName",
    "ScanningSequence",
    "EchoTime",
    "RepetitionTime",
    "InversionTime",
    "FrameOfReferenceUID",
)
#: sequence names in free text, checked in this order ("T1 FLAIR" is T1-weighted); diffusion,
#: perfusion, susceptibility and functional series have no simple lesion contrast: unknown
_NAME_PATTERNS = (
    (
        "unknown",
        re.compile(r"DWI|DTI|DIFF|ADC|TRACE|PERF|ASL|SWI|BOLD|FMRI|RESTING", re.IGNORECASE),
    ),
    ("T1C", re.compile(r"(?<!\d)T1(?!\d).*(\+ ?C|POST|GAD|\bGD\b|CONTRAST|\bCE\b)", re.IGNORECASE)),
    ("T1", re.compile(r"(?<!\d)T1(?!\d)|MP-?RAGE|MP2RAGE|SPGR|BRAVO|VIBE", re.IGNORECASE)),
    ("FLAIR", re.compile(r"FLAIR|TIRM|DARK[-_ ]?FLUID", re.IGNORECASE)),
    ("T2", re.compile(r"(?<!\d)T2(?!\d)|STIR|HASTE", re.IGNORECASE)),
    ("PD", re.compile(r"(?<![A-Z])PD(?![A-Z])|PROTON", re.IGNORECASE)),
)


def header_values(volume: ImageVolume) -> dict[str, str]:
    """``HEADER_KEYS`` from the volume's attributes, the rest from its first DICOM file."""
    values = {key: str(volume.attributes[key]) for key in HEADER_KEYS if volume.attributes.get(key)}
    missing = [key for key in HEADER_KEYS if key not in values]
    if not missing or not volume.slices or volume.slices[0].sop_instance_uid is None:
        return values
    try:
        ds = pydicom.dcmread(volume.slices[0].source_file, stop_before_pixels=True)
    except (OSError, pydicom.errors.InvalidDicomError):
        return values
    for key in missing:
        value = ds.get(key)
        if value is not None and str(value).strip():
            multi = isinstance(value, pydicom.multival.MultiValue)
            values[key] = "\\".join(str(v) for v in value) if multi else str(value)
    return values


def _number(values: Mapping[str, str], key: str) -> float | None:
    try:
        number = float(values[key].split("\\")[0])
    except (KeyError, ValueError):
        return None
    return number if math.isfinite(number) else None


def guess_sequence(values: Mapping[str, str]) -> tuple[str, str]:
    """The MR weighting (one of ``SEQUENCES``) from names, else from TR / TE / TI (ms).

    Returns:
        The sequence and what the guess rests on.
    """
    for key in ("SeriesDescription", "ProtocolName", "SequenceName"):
        text = values.get(key, "")
        for sequence, pattern in _NAME_PATTERNS:
            if text and pattern.search(text):
                return sequence, f"{key} {text!r}"
    tr, te, ti = (_number(values, k) for k in ("RepetitionTime", "EchoTime", "InversionTime"))
    timing = ", ".join(
        f"{name} {value:g} ms"
        for name, value in (("TR", tr), ("TE", te), ("TI", ti))
        if value is not None
    )
    if ti is not None and ti > 0:
        if ti >= 1500:
            return "FLAIR", timing  # fluid nulled: long TI
        if ti >= 300 and (te is None or te < 30):
            return "T1", timing  # MPRAGE-like inversion recovery
        return "T2", timing  # short TI (STIR): fluid stays bright
    if tr is not None and te is not None:
        if tr < 1000 and te < 30:
            return "T1", timing
        if tr >= 2000 and te >= 60:
            return "T2", timing
        if tr >= 2000 and te < 40:
            return "PD", timing
    return "unknown", timing or "no sequence name or timing in the header"
