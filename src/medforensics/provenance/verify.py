"""Verifying DICOM digital signatures, ours and other tools' (DCMTK ``dcmsign`` included).

For each item of a Digital Signatures Sequence (top level, and inside sequence items except the
Original Attributes Sequence, whose signatures describe an earlier state of the object):

1. the MAC is recomputed over the listed Data Elements Signed and the signature's own item
   (``mac``), in the MAC Calculation Transfer Syntax;
2. the Signature is checked with the public key of the Certificate of Signer (RSA PKCS#1 v1.5
   or ECDSA);
3. when that fails, the per-element digests stored with our own signatures (``digests``) name
   what changed ("Pixel Data changed", "signed attribute (0010,0010) PatientName changed");
   removed attributes are named for every signature;
4. the certificate is checked: valid when signed and now, key usage, issued by a CA of the trust
   bundle (when one is given), not revoked by a given CRL (``certs.check_certificate``).

A file is ``valid`` (every signature intact, no certificate problem), ``invalid`` (some
signature does not verify: the file changed after signing), ``untrusted`` (intact, but a
certificate problem), ``unsigned`` or ``error`` (unreadable).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pydicom
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from pydicom.datadict import DicomDictionary, dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import DT

from medforensics.provenance.certs import (
    CertificateProblem,
    certificate_from_der,
    check_certificate,
    der_trim,
    describe_key,
    subject_name,
)
from medforensics.provenance.digests import (
    DigestList,
    read_digest_lists,
    register_private_dictionary,
)
from medforensics.provenance.mac import (
    DIGITAL_SIGNATURES_SEQUENCE,
    MAC_TRANSFER_SYNTAX,
    PIXEL_DATA,
    MacError,
    mac_digest,
    tag_signable,
)

FileStatus = Literal["valid", "invalid", "untrusted", "unsigned", "error"]

_PREHASHED: dict[str, hashes.HashAlgorithm] = {
    "SHA256": hashes.SHA256(),
    "SHA384": hashes.SHA384(),
    "SHA512": hashes.SHA512(),
    "SHA1": hashes.SHA1(),
    "MD5": hashes.MD5(),
}
#: DER DigestInfo prefix for RIPEMD-160 (PKCS#1), which `cryptography` has no hash class for
_RIPEMD160_DIGEST_INFO = bytes.fromhex("3021300906052b2403020105000414")
_ORIGINAL_ATTRIBUTES = Tag(0x0400, 0x0561)
#: MAC Calculation Transfer Syntaxes whose encoding is explicit VR little endian
_EXPLICIT_LITTLE = {str(MAC_TRANSFER_SYNTAX), "1.2.840.10008.1.2.1.99"}
#: implicit VR and big endian: not allowed as MAC Calculation Transfer Syntax
_OTHER_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.2"}


@dataclass(frozen=True)
class VerifyOptions:
    """What to check certificates against.

    Attributes:
        trust: trusted CA (or signer) certificates; None: trust is not evaluated.
        crls: certificate revocation lists to consult.
        now: the time to check validity at (default: now).
    """

    trust: tuple[x509.Certificate, ...] | None = None
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    now: dt.datetime | None = None


@dataclass
class SignatureCheck:
    """The verdict on one signature.

    Attributes:
        uid: Digital Signature UID.
        location: ``dataset`` or the path of the sequence item that holds the signature.
        mac_id: MAC ID Number linking the signature to its MAC Parameters item.
        signer: common name of the certificate's subject.
        issuer: common name of the certificate's issuer.
        key: ``RSA 2048``, ``ECDSA secp256r1``...
        mac_algorithm: ``SHA256``...
        signed_at: Digital Signature DateTime as written.
        purpose: the signature purpose's code meaning.
        signed_elements: how many data elements the signature covers.
        pixel_data_signed: whether Pixel Data is among them.
        intact: the MAC and the signature verify: nothing signed changed since signing.
        problems: why the signature does not verify (empty when intact).
        changed: what changed, for people ("Pixel Data changed"...).
        certificate_problems: why the certificate should not be relied on.
        notes: other remarks.
    """

    uid: str | None
    location: str = "dataset"
    mac_id: int | None = None
    signer: str | None = None
    issuer: str | None = None
    key: str | None = None
    mac_algorithm: str | None = None
    signed_at: str | None = None
    purpose: str | None = None
    signed_elements: int = 0
    pixel_data_signed: bool = False
    intact: bool = False
    problems: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    certificate_problems: list[CertificateProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.intact and not self.certificate_problems

    def summary(self) -> str:
        who = f"signed by {self.signer!r}" if self.signer else "signature"
        if not self.intact:
            return f"{who}: INVALID: " + "; ".join(self.changed or self.problems)
        if self.certificate_problems:
            return f"{who}: " + "; ".join(p.message for p in self.certificate_problems)
        return f"{who}: valid ({self.signed_elements} elements)"


@dataclass
class FileVerification:
    """The verdict on one file."""

    path: str
    status: FileStatus
    signatures: list[SignatureCheck] = field(default_factory=list)
    error: str | None = None
    uncovered: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.status == "error":
            return f"unreadable: {self.error}"
        if self.status == "unsigned":
            return "unsigned: no digital signature"
        return "; ".join(s.summary() for s in self.signatures)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def element_name(tag: BaseTag) -> str:
    """``Pixel Data`` for the pixels, else ``(0010,0010) PatientName``."""
    if tag == PIXEL_DATA:
        return "Pixel Data"
    keyword = keyword_for_tag(tag) or ("private" if tag.is_private else "unknown")
    return f"({tag.group:04X},{tag.element:04X}) {keyword}"


def _change_text(tag: BaseTag, what: str) -> str:
    name = element_name(tag)
    return f"{name} {what}" if tag == PIXEL_DATA else f"signed attribute {name} {what}"


def _signed_at(item: Dataset) -> dt.datetime | None:
    try:
        value = DT(str(item.DigitalSignatureDateTime))
    except (AttributeError, ValueError):
        return None
    moment = dt.datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second,
        value.microsecond, tzinfo=value.tzinfo or dt.UTC,
    )  # fmt: skip
    return moment.astimezone(dt.UTC)


def _verify_signature(cert: x509.Certificate, signature: bytes, digest: bytes, mac: str) -> bool:
    public = cert.public_key()
    try:
        if isinstance(public, rsa.RSAPublicKey):
            if mac == "RIPEMD160":
                recovered = public.recover_data_from_signature(signature, padding.PKCS1v15(), None)
                return recovered == _RIPEMD160_DIGEST_INFO + digest
            public.verify(signature, digest, padding.PKCS1v15(), Prehashed(_PREHASHED[mac]))
            return True
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(der_trim(signature), digest, ec.ECDSA(Prehashed(_PREHASHED[mac])))
            return True
    except (InvalidSignature, ValueError):
        return False
    raise UnsupportedAlgorithm(f"{type(public).__name__} keys cannot verify DICOM signatures")


def _mac_parameters(ds: Dataset, mac_id: int | None) -> Dataset | None:
    for item in ds.get("MACParametersSequence", []):
        if mac_id is not None and item.get("MACIDNumber") == mac_id:
            return item
    return None


def _signed_tags(parameters: Dataset) -> list[BaseTag]:
    elem = parameters[0x04000020]
    if elem.VM == 0:
        return []
    values = elem.value if elem.VM > 1 else [elem.value]
    return [Tag(t) for t in values]


def _syntax_problem(ds: Dataset, syntax: str) -> str | None:
    """Why the MAC cannot be recomputed in ``syntax`` for ``ds`` as stored, if it cannot."""
    pixel = ds.get_item(PIXEL_DATA)
    compressed = pixel is not None and (
        getattr(pixel, "length", 0) == 0xFFFFFFFF or getattr(pixel, "is_undefined_length", False)
    )
    file_syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))
    if syntax in _EXPLICIT_LITTLE:
        # deflate compresses the file, not the values: the MAC encoding is explicit VR LE
        if compressed:
            return (
                f"Pixel Data was compressed ({file_syntax}) after it was signed uncompressed: "
                "decompress the file to check this signature"
            )
        return None
    if syntax in _OTHER_NATIVE:
        return f"MAC Calculation Transfer Syntax {syntax} is not explicit VR little endian"
    if pixel is not None and not compressed:
        return (
            f"Pixel Data was signed compressed ({syntax}) and is now stored uncompressed: "
            f"the signature can only be checked on the data compressed as {syntax}"
        )
    if compressed and file_syntax and file_syntax != syntax:
        return (
            f"Pixel Data was signed compressed as {syntax} and is now compressed as "
            f"{file_syntax}: the signature can only be checked on the data as signed"
        )
    return None


def verify_signature_item(
    ds: Dataset,
    item: Dataset,
    options: VerifyOptions,
    digest_lists: dict[str, DigestList] | None = None,
    location: str = "dataset",
) -> SignatureCheck:
    """Check one Digital Signatures Sequence item of ``ds`` (see the module docstring)."""
    uid = str(item.get("DigitalSignatureUID", "")) or None
    mac_id = item.get("MACIDNumber")
    signed_at = item.get("DigitalSignatureDateTime")
    check = SignatureCheck(
        uid=uid, location=location, mac_id=mac_id, signed_at=str(signed_at) if signed_at else None
    )
    purpose = item.get("DigitalSignaturePurposeCodeSequence")
    if purpose:
        check.purpose = str(purpose[0].get("CodeMeaning", "")) or None
    parameters = _mac_parameters(ds, mac_id)
    if parameters is None:
        check.problems.append(f"no MAC Parameters item with MAC ID Number {mac_id}")
        return check
    mac = str(parameters.get("MACAlgorithm", ""))
    check.mac_algorithm = mac
    tags = _signed_tags(parameters) if 0x04000020 in parameters else []
    check.signed_elements = len(tags)
    check.pixel_data_signed = PIXEL_DATA in tags
    cert: x509.Certificate | None = None
    try:
        cert = certificate_from_der(bytes(item[0x04000115].value))
        check.signer, check.issuer = subject_name(cert), subject_name(cert, issuer=True)
        check.key = describe_key(cert.public_key())  # type: ignore[arg-type]
    except (KeyError, ValueError, TypeError):
        check.certificate_problems.append(
            CertificateProblem("unreadable", "the Certificate of Signer cannot be read")
        )
    if not tags:
        check.problems.append("Data Elements Signed is empty")
    if any(not tag_signable(tag) for tag in tags):
        check.problems.append("Data Elements Signed lists elements that cannot be signed")
    syntax = str(parameters.get("MACCalculationTransferSyntaxUID", ""))
    syntax_problem = _syntax_problem(ds, syntax)
    if syntax_problem:
        check.problems.append(syntax_problem)
    if mac not in _PREHASHED and mac != "RIPEMD160":
        check.problems.append(f"unsupported MAC algorithm {mac!r}")
    if 0x04000120 not in item:
        check.problems.append("no Signature value")
    if check.problems or cert is None:
        return check
    removed = [tag for tag in tags if tag not in ds]
    try:
        digest = mac_digest(ds, tags, item, mac)
        check.intact = _verify_signature(cert, bytes(item[0x04000120].value), digest, mac)
    except (MacError, UnsupportedAlgorithm) as exc:
        check.problems.append(str(exc))
    if not check.intact:
        if not check.problems:
            check.problems.append("the signature does not match the signed data")
        check.changed = _diagnose(ds, uid, removed, digest_lists, cert)
    problems = check_certificate(
        cert, signed_at=_signed_at(item), now=options.now, trust=options.trust, crls=options.crls
    )
    check.certificate_problems.extend(problems)
    if options.trust is None:
        check.notes.append("the signer was not checked against a trust list (give --trust)")
    if 0x04000310 in item:
        check.notes.append("a certified timestamp is present but was not checked")
    return check


def _list_authentic(cert: x509.Certificate, stored: DigestList) -> bool:
    public = cert.public_key()
    data, signature = stored.payload(), stored.signature
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(der_trim(signature), data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def _diagnose(
    ds: Dataset,
    uid: str | None,
    removed: list[BaseTag],
    digest_lists: dict[str, DigestList] | None,
    cert: x509.Certificate,
) -> list[str]:
    changes = [_change_text(tag, "removed") for tag in removed]
    lists = digest_lists if digest_lists is not None else read_digest_lists(ds)
    stored = lists.get(uid or "")
    if stored is None:
        if not changes:
            changes.append(
                "the signed data or the signature changed (this signature stores no "
                "per-element digests, so the changed attribute cannot be named)"
            )
        return changes
    changed, gone = stored.changed(ds)
    changes.extend(_change_text(tag, "changed") for tag in changed)
    changes.extend(_change_text(tag, "removed") for tag in gone if tag not in removed)
    authentic = _list_authentic(cert, stored)
    if authentic and not changes:
        changes.append(
            "no signed attribute changed: the signature's own attributes (UID, date and time, "
            "purpose) or the Signature value were altered"
        )
    elif not authentic and not changes:
        changes.append(
            "Certificate of Signer replaced: the signed attributes still match the digests "
            "stored at signing, but neither the signature nor that digest list verifies with "
            "the certificate now in the file"
        )
    elif not authentic:
        changes.append(
            "(named from an element digest list that does not verify either: it may have been "
            "altered too)"
        )
    return changes


def signature_sites(ds: Dataset, path: str = "dataset") -> Iterator[tuple[str, Dataset]]:
    """Every dataset or sequence item holding a Digital Signatures Sequence, with its path."""
    if DIGITAL_SIGNATURES_SEQUENCE in ds:
        yield path, ds
    for tag in sorted(ds.keys()):
        if tag in (DIGITAL_SIGNATURES_SEQUENCE, _ORIGINAL_ATTRIBUTES) or tag.group == 0x4FFE:
            continue
        raw = ds.get_item(tag)
        vr = getattr(raw, "VR", None)
        if vr is None and not tag.is_private:
            vr = dictionary_VR(tag) if tag in DicomDictionary else None
        if vr not in ("SQ", None) or tag == PIXEL_DATA:
            continue
        elem = ds[tag]
        if elem.VR != "SQ":
            continue
        keyword = keyword_for_tag(tag) or f"({tag.group:04X},{tag.element:04X})"
        for index, item in enumerate(elem.value):
            yield from signature_sites(item, f"{path}/{keyword}[{index}]")


def verify_dataset(ds: Dataset, options: VerifyOptions | None = None) -> list[SignatureCheck]:
    """Check every signature in ``ds``."""
    options = options or VerifyOptions()
    checks = []
    for location, site in signature_sites(ds):
        lists = read_digest_lists(site)
        for item in site[DIGITAL_SIGNATURES_SEQUENCE].value:
            checks.append(verify_signature_item(site, item, options, lists, location))
    return checks


def check_signature_integrity(ds: Dataset, uid: str) -> list[str]:
    """Why the top-level signature ``uid`` does not verify (empty list: it does)."""
    for item in ds.get("DigitalSignaturesSequence", []):
        if str(item.get("DigitalSignatureUID", "")) == uid:
            check = verify_signature_item(ds, item, VerifyOptions())
            return [] if check.intact else check.changed or check.problems
    return [f"no signature {uid} in the written file"]


def _status(checks: Sequence[SignatureCheck]) -> FileStatus:
    if not checks:
        return "unsigned"
    if not all(c.intact for c in checks):
        return "invalid"
    if any(c.certificate_problems for c in checks):
        return "untrusted"
    return "valid"


def _uncovered(ds: Dataset, checks: Sequence[SignatureCheck]) -> list[str]:
    covered: set[BaseTag] = set()
    for check in checks:
        parameters = _mac_parameters(ds, check.mac_id) if check.location == "dataset" else None
        if check.intact and parameters is not None and 0x04000020 in parameters:
            covered.update(_signed_tags(parameters))
    return [
        element_name(tag)
        for tag in sorted(ds.keys())
        if tag_signable(tag) and not tag.is_private and tag not in covered
    ]


def verify_file(path: str | Path, options: VerifyOptions | None = None) -> FileVerification:
    """Read ``path`` and check its signatures; never raises for a bad file."""
    register_private_dictionary()
    try:
        ds = pydicom.dcmread(path)
    except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError) as exc:
        return FileVerification(str(path), "error", error=f"not a readable DICOM file ({exc})")
    try:
        checks = verify_dataset(ds, options)
        status = _status(checks)
        uncovered = _uncovered(ds, checks) if status in ("valid", "untrusted") else []
    except (KeyError, ValueError, TypeError) as exc:  # malformed signature sequences
        return FileVerification(str(path), "error", error=f"malformed signature data ({exc})")
    except Exception as exc:  # pydicom parses lazily: a damaged element surfaces only here
        return FileVerification(
            str(path), "error", error=f"damaged DICOM data ({type(exc).__name__}: {exc})"
        )
    return FileVerification(str(path), status, checks, uncovered=uncovered)
