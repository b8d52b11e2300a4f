"""Signing DICOM files: a Digital Signatures Sequence item per PS3.15 Annex C, as DCMTK writes it.

``sign_dataset`` adds, to the top level of a dataset:

* a MAC Parameters Sequence (4FFE,0001) item: MAC ID Number, MAC Calculation Transfer Syntax
  UID (explicit VR little endian; the file's own syntax when its pixel data is compressed), MAC
  Algorithm (``SHA256`` by default) and Data Elements Signed (the profile's tags);
* a Digital Signatures Sequence (FFFA,FFFA) item: MAC ID Number, Digital Signature UID,
  Digital Signature DateTime (UTC), Certificate Type ``X509_1993_SIG``, Certificate of Signer
  (DER), Signature, and a Digital Signature Purpose Code Sequence (ASTM E1762 code);
* the private per-element digest block (``digests``), signed on its own with the same key.

The Signature is RSA PKCS#1 v1.5 or ECDSA (DER, padded to even length) over the MAC.
``sign_file`` writes a signed copy atomically and reads it back to check that the signature it
just made verifies; it never changes the source unless the target is the source.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pydicom
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import generate_uid

from medforensics.provenance.certs import (
    PrivateKey,
    describe_key,
    key_matches,
    load_certificate,
    load_private_key,
    subject_name,
    utcnow,
)
from medforensics.provenance.digests import add_digest_block, register_private_dictionary
from medforensics.provenance.mac import MAC_TRANSFER_SYNTAX, MacError, mac_digest
from medforensics.provenance.profiles import select_tags

#: ASTM E1762 signature purposes (coding scheme ``ASTM-sigpurpose``)
PURPOSES = {
    1: "Author's Signature",
    2: "Coauthor's Signature",
    3: "Co-participant's Signature",
    4: "Transcriptionist/Recorder Signature",
    5: "Verification Signature",
    6: "Validation Signature",
    7: "Consent Signature",
    8: "Signature Witness Signature",
    9: "Event Witness Signature",
    10: "Identity Witness Signature",
    11: "Consent Witness Signature",
    12: "Interpreter Signature",
    13: "Review Signature",
    14: "Source Signature",
    15: "Addendum Signature",
    16: "Modification Signature",
    17: "Administrative (Error/Edit) Signature",
    18: "Timestamp Signature",
}
#: purpose of a site's signature on acquisition or ingest
DEFAULT_PURPOSE = 14
#: MAC algorithms we sign with (verification also accepts SHA1, MD5 and RIPEMD160)
SIGNING_MACS: dict[str, hashes.HashAlgorithm] = {
    "SHA256": hashes.SHA256(),
    "SHA384": hashes.SHA384(),
    "SHA512": hashes.SHA512(),
}
CERTIFICATE_TYPE = "X509_1993_SIG"


class SigningError(ValueError):
    """A file cannot be signed as asked; the message names the file and what to do."""


@dataclass(frozen=True)
class Signer:
    """A private key and the certificate that vouches for it."""

    key: PrivateKey
    certificate: x509.Certificate

    def __post_init__(self) -> None:
        if not key_matches(self.key, self.certificate):
            raise SigningError(
                f"the private key does not belong to the certificate of {self.name!r}"
            )

    @classmethod
    def from_files(
        cls, key_path: str | Path, cert_path: str | Path, passphrase: bytes | None = None
    ) -> Signer:
        return cls(load_private_key(key_path, passphrase), load_certificate(cert_path))

    @property
    def name(self) -> str:
        return subject_name(self.certificate)

    def check_valid(self, now: dt.datetime) -> None:
        cert = self.certificate
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise SigningError(
                f"the certificate of {self.name!r} is valid only from "
                f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}: "
                "signatures made with it now would not verify; issue a new one "
                "(medforensics keys init)"
            )

    def sign_digest(self, digest: bytes, mac_algorithm: str) -> bytes:
        algorithm = Prehashed(SIGNING_MACS[mac_algorithm])
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(digest, padding.PKCS1v15(), algorithm)
        signature = self.key.sign(digest, ec.ECDSA(algorithm))
        # DER, odd lengths padded with one zero byte (DICOM values have even length)
        return signature + (b"\x00" if len(signature) % 2 else b"")

    def sign_bytes(self, data: bytes) -> bytes:
        """A SHA-256 signature over ``data`` (for the private digest list)."""
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


@dataclass(frozen=True)
class SignedFile:
    """One file signed by ``sign_file``."""

    source: Path
    target: Path
    signature_uid: str
    profile: str
    signed_elements: int


def dicom_datetime(moment: dt.datetime) -> str:
    """DT with microseconds and a UTC offset, as DCMTK writes it."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y%m%d%H%M%S.%f") + "+0000"


def _mac_transfer_syntax(ds: Dataset) -> str:
    pixel = ds.get_item(0x7FE00010)
    encapsulated = pixel is not None and getattr(pixel, "length", 0) == 0xFFFFFFFF
    if pixel is not None and not encapsulated:
        encapsulated = bool(getattr(pixel, "is_undefined_length", False))
    if encapsulated:
        return str(ds.file_meta.TransferSyntaxUID)
    return str(MAC_TRANSFER_SYNTAX)


def _free_mac_id(ds: Dataset) -> int:
    used = {
        int(item.MACIDNumber)
        for keyword in ("MACParametersSequence", "DigitalSignaturesSequence")
        for item in ds.get(keyword, [])
        if "MACIDNumber" in item
    }
    return next(i for i in range(0x10000) if i not in used)


def sign_dataset(
    ds: Dataset,
    signer: Signer,
    *,
    profile: str = "base",
    mac_algorithm: str = "SHA256",
    purpose: int | None = DEFAULT_PURPOSE,
    element_digests: bool = True,
    now: dt.datetime | None = None,
) -> str:
    """Add a signature to the top level of ``ds``; returns its Digital Signature UID.

    Args:
        ds: the dataset, changed in place.
        signer: key and certificate.
        profile: ``base`` (every signable element) or ``creator`` (see ``profiles``).
        mac_algorithm: ``SHA256``, ``SHA384`` or ``SHA512``.
        purpose: ASTM E1762 purpose code (1..18), or None for no purpose code sequence.
        element_digests: also store the per-element digest list (``digests``).
        now: signing time (default: now); the certificate must be valid then.
    """
    if mac_algorithm not in SIGNING_MACS:
        raise SigningError(f"MAC algorithm {mac_algorithm!r}: choose one of {list(SIGNING_MACS)}")
    if purpose is not None and purpose not in PURPOSES:
        raise SigningError(f"signature purpose {purpose}: choose a code from 1 to 18")
    moment = now or utcnow()
    signer.check_valid(moment)
    register_private_dictionary()
    tags: list[BaseTag] = select_tags(ds, profile)
    if not tags:
        raise SigningError(f"the {profile} profile finds no attribute that can be signed")
    uid = generate_uid()
    if element_digests:
        add_digest_block(ds, uid, tags, signer.sign_bytes)
    mac_id = _free_mac_id(ds)

    item = Dataset()
    item.add_new(0x04000005, "US", mac_id)
    item.add_new(0x04000100, "UI", uid)
    item.add_new(0x04000105, "DT", dicom_datetime(moment))
    item.add_new(0x04000110, "CS", CERTIFICATE_TYPE)
    der = signer.certificate.public_bytes(Encoding.DER)
    item.add_new(0x04000115, "OB", der + (b"\x00" if len(der) % 2 else b""))
    if purpose is not None:
        code = Dataset()
        code.CodeValue = str(purpose)
        code.CodingSchemeDesignator = "ASTM-sigpurpose"
        code.CodeMeaning = PURPOSES[purpose]
        item.add_new(0x04000401, "SQ", Sequence([code]))
    digest = mac_digest(ds, tags, item, mac_algorithm)
    item.add_new(0x04000120, "OB", signer.sign_digest(digest, mac_algorithm))

    parameters = Dataset()
    parameters.add_new(0x04000005, "US", mac_id)
    parameters.add_new(0x04000010, "UI", _mac_transfer_syntax(ds))
    parameters.add_new(0x04000015, "CS", mac_algorithm)
    parameters.add_new(0x04000020, "AT", list(tags) if len(tags) != 1 else tags[0])

    if "MACParametersSequence" not in ds:
        ds.add_new(0x4FFE0001, "SQ", Sequence())
    if "DigitalSignaturesSequence" not in ds:
        ds.add_new(0xFFFAFFFA, "SQ", Sequence())
    ds.MACParametersSequence.append(parameters)
    ds.DigitalSignaturesSequence.append(item)
    return uid


def read_dicom(path: str | Path) -> Dataset:
    """Read a whole DICOM file (pixel data included), our private block's VRs known."""
    register_private_dictionary()
    try:
        return pydicom.dcmread(path)
    except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise SigningError(f"{path}: not a readable DICOM file ({exc})") from exc


def sign_file(
    source: str | Path,
    target: str | Path,
    signer: Signer,
    *,
    profile: str = "base",
    mac_algorithm: str = "SHA256",
    purpose: int | None = DEFAULT_PURPOSE,
    now: dt.datetime | None = None,
) -> SignedFile:
    """Write a signed copy of ``source`` to ``target`` (which may be ``source`` itself).

    The copy is written to a temporary file next to ``target``, read back and verified, then
    moved into place, so ``target`` is never left half-written and never holds a signature
    that does not verify.
    """
    from medforensics.provenance.verify import check_signature_integrity

    source_path, target_path = Path(source), Path(target)
    ds = read_dicom(source_path)
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        raise SigningError(f"{source_path}: no transfer syntax in the file meta information")
    try:
        uid = sign_dataset(
            ds, signer, profile=profile, mac_algorithm=mac_algorithm, purpose=purpose, now=now
        )
    except SigningError as exc:
        raise SigningError(f"{source_path}: {exc}") from exc
    except (MacError, KeyError, TypeError) as exc:
        raise SigningError(f"{source_path}: cannot be signed: {exc}") from exc
    signed = ds.MACParametersSequence[-1]["DataElementsSigned"].VM
    target_path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target_path.name}.", dir=target_path.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        try:
            ds.save_as(tmp, enforce_file_format=False)
        except (TypeError, ValueError, AttributeError) as exc:
            raise SigningError(f"{source_path}: cannot write the signed copy: {exc}") from exc
        problems = check_signature_integrity(read_dicom(tmp), uid)
        if problems:
            raise SigningError(
                f"{source_path}: the signed copy does not verify ({'; '.join(problems)}); "
                "nothing was written"
            )
        if source_path.exists():
            os.chmod(tmp, source_path.stat().st_mode & 0o777)
        os.replace(tmp, target_path)
    finally:
        tmp.unlink(missing_ok=True)
    return SignedFile(source_path, target_path, uid, profile, signed)


def describe_signer(signer: Signer) -> str:
    return f"{signer.name} ({describe_key(signer.key)})"
