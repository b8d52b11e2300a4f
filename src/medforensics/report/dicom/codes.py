"""The private coding scheme for manipulation concepts (``99MEDFOR``).

DICOM has no standard codes for "probability of manipulation" or "copy-move finding", so the
results use a private scheme. Private designators start with ``99`` (PS3.16 section 8.2); every
object that uses one names it in its Coding Scheme Identification Sequence, so a reader can tell
what ``99MEDFOR`` means. The table is documented in ``docs/dicom-outputs.md``; code values never
change meaning once released (new concepts get new values).
"""

from __future__ import annotations

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.sr.coding import Code

SCHEME_DESIGNATOR = "99MEDFOR"
SCHEME_NAME = "medforensics manipulation concepts"
SCHEME_VERSION = "1"
RESPONSIBLE_ORGANIZATION = "medforensics project"


def _code(value: str, meaning: str) -> Code:
    return Code(value, SCHEME_DESIGNATOR, meaning)


#: procedure reported in the SR: the forensic analysis itself
MANIPULATION_ANALYSIS = _code("MF-ANALYSIS", "Image manipulation analysis")
#: numeric concept: calibrated probability that the image was manipulated, in [0, 1]
MANIPULATION_PROBABILITY = _code("MF-PROBABILITY", "Probability of manipulation")
#: qualitative concept whose value is one of the verdict codes below
MANIPULATION_VERDICT = _code("MF-VERDICT", "Manipulation verdict")
AUTHENTIC = _code("MF-AUTHENTIC", "Authentic")
MANIPULATED = _code("MF-MANIPULATED", "Manipulated")
INCONCLUSIVE = _code("MF-INCONCLUSIVE", "Inconclusive")
#: finding types (TID 1410 Finding), one per finding kind of the detectors
LOCAL_FINDING = _code("MF-LOCAL", "Local manipulation finding")
GLOBAL_FINDING = _code("MF-GLOBAL", "Global manipulation finding")
METADATA_FINDING = _code("MF-METADATA", "Metadata manipulation finding")
SIGNATURE_FINDING = _code("MF-SIGNATURE", "Signature manipulation finding")
OTHER_FINDING = _code("MF-OTHER", "Other manipulation finding")
#: SEG segmented property category and type
IMAGE_MANIPULATION = _code("MF-MANIPULATION", "Image manipulation")
MANIPULATION_MAP = _code("MF-MAP", "Manipulation probability map")
#: how the Secondary Capture was derived; the Encapsulated PDF's document title
MANIPULATION_OVERLAY = _code("MF-OVERLAY", "Manipulation map overlay")
MANIPULATION_REPORT = _code("MF-REPORT", "Image manipulation analysis report")

VERDICT_CODES: dict[str, Code] = {
    "authentic": AUTHENTIC,
    "manipulated": MANIPULATED,
    "inconclusive": INCONCLUSIVE,
}

FINDING_KIND_CODES: dict[str, Code] = {
    "local": LOCAL_FINDING,
    "global": GLOBAL_FINDING,
    "metadata": METADATA_FINDING,
    "signature": SIGNATURE_FINDING,
}

#: every code of the scheme, for the documentation table and the tests
ALL_CODES: tuple[Code, ...] = (
    MANIPULATION_ANALYSIS,
    MANIPULATION_PROBABILITY,
    MANIPULATION_VERDICT,
    AUTHENTIC,
    MANIPULATED,
    INCONCLUSIVE,
    LOCAL_FINDING,
    GLOBAL_FINDING,
    METADATA_FINDING,
    SIGNATURE_FINDING,
    OTHER_FINDING,
    IMAGE_MANIPULATION,
    MANIPULATION_MAP,
    MANIPULATION_OVERLAY,
    MANIPULATION_REPORT,
)

#: UCUM "no units": probabilities are dimensionless
UNITLESS = Code("1", "UCUM", "no units")


def finding_code(kind: str) -> Code:
    """The finding type code of a finding kind; ``MF-OTHER`` for kinds outside the table."""
    return FINDING_KIND_CODES.get(kind, OTHER_FINDING)


def kind_of_code(value: str, designator: str) -> str | None:
    """The finding kind a finding type code stands for, None for ``MF-OTHER`` and foreign codes."""
    if designator != SCHEME_DESIGNATOR:
        return None
    for kind, code in FINDING_KIND_CODES.items():
        if code.value == value:
            return kind
    return None


def verdict_of_code(value: str, designator: str) -> str | None:
    """The verdict a verdict code stands for, None for codes outside the scheme."""
    if designator != SCHEME_DESIGNATOR:
        return None
    for verdict, code in VERDICT_CODES.items():
        if code.value == value:
            return verdict
    return None


def coding_scheme_identification() -> CodingSchemeIdentificationItem:
    """The Coding Scheme Identification Sequence item that declares ``99MEDFOR``."""
    return CodingSchemeIdentificationItem(
        designator=SCHEME_DESIGNATOR,
        name=SCHEME_NAME,
        version=SCHEME_VERSION,
        responsible_organization=RESPONSIBLE_ORGANIZATION,
    )
