"""Keys, X.509 certificates and revocation lists: loading, checking, and a site's own small CA.

Checking is deliberately simple and explained: a signer certificate is *trusted* when a
certificate in the trust bundle issued it directly (its signature verifies with that
certificate's key and that certificate is a CA), or when the bundle holds the signer certificate
itself. Put intermediate CAs in the bundle to trust what they issue. There is no name-constraint
or policy processing: this is a site's own PKI, not the web's.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class KeyFileError(ValueError):
    """A key, certificate or CRL file cannot be used; the message names the file."""


class PassphraseNeeded(KeyFileError):
    """The private key is encrypted and no passphrase was given."""


@dataclass(frozen=True)
class CertificateProblem:
    """Why a signer certificate should not be relied on.

    Attributes:
        code: ``expired``, ``not-yet-valid``, ``not-valid-at-signing``, ``untrusted``,
            ``revoked``, ``crl-invalid``, ``key-usage`` or ``unreadable``.
        message: the same for people.
    """

    code: str
    message: str


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def der_trim(raw: bytes) -> bytes:
    """DER bytes without the pad byte DICOM adds to odd-length values."""
    if len(raw) < 2:
        return raw
    first = raw[1]
    if first < 0x80:
        return raw[: 2 + first]
    size = first & 0x7F
    return raw[: 2 + size + int.from_bytes(raw[2 : 2 + size], "big")]


def certificate_from_der(raw: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der_trim(bytes(raw)))


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from exc


def load_private_key(path: str | Path, passphrase: bytes | None = None) -> PrivateKey:
    """An RSA or EC private key from a PEM or DER file, decrypted with ``passphrase``."""
    data = _read(path, "private key")
    loader = (
        serialization.load_pem_private_key
        if b"-----BEGIN" in data
        else serialization.load_der_private_key
    )
    try:
        key = loader(data, password=passphrase or None)
    except TypeError as exc:
        if passphrase is None and "encrypted" in str(exc).lower():
            raise PassphraseNeeded(
                f"{path}: the private key is encrypted; give its passphrase"
            ) from exc
        raise KeyFileError(f"{path}: {exc}") from exc
    except ValueError as exc:
        hint = "wrong passphrase, or " if passphrase else ""
        raise KeyFileError(f"{path}: cannot load the private key ({hint}not a key file)") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyFileError(f"{path}: only RSA and ECDSA keys can sign DICOM files")
    return key


def key_is_encrypted(path: str | Path) -> bool:
    data = _read(path, "private key")
    return b"ENCRYPTED" in data[:200]


def load_certificates(path: str | Path) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, or the one in a DER file."""
    data = _read(path, "certificate")
    try:
        if b"-----BEGIN CERTIFICATE" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise KeyFileError(f"{path}: not an X.509 certificate (PEM or DER): {exc}") from exc


def load_certificate(path: str | Path) -> x509.Certificate:
    """The first certificate of a file (the signer's, in a bundle that also holds its CA)."""
    return load_certificates(path)[0]


def load_crl(path: str | Path) -> x509.CertificateRevocationList:
    data = _read(path, "revocation list")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise KeyFileError(f"{path}: not a certificate revocation list: {exc}") from exc


def subject_name(cert: x509.Certificate, issuer: bool = False) -> str:
    """The common name of a certificate's subject (or issuer), else the whole name."""
    name = cert.issuer if issuer else cert.subject
    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else name.rfc4514_string()


def describe_key(key: PublicKey | PrivateKey) -> str:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"RSA {key.key_size}"
    return f"ECDSA {key.curve.name}"


def key_matches(key: PrivateKey, cert: x509.Certificate) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return bool(key.public_key().public_bytes(enc, fmt) == cert.public_key().public_bytes(enc, fmt))


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def find_issuer(
    cert: x509.Certificate, trust: Iterable[x509.Certificate]
) -> x509.Certificate | None:
    """The trusted certificate that is ``cert`` itself or issued it, if any."""
    for anchor in trust:
        if anchor == cert or (_is_ca(anchor) and _issued_by(cert, anchor)):
            return anchor
    return None


def check_certificate(
    cert: x509.Certificate,
    *,
    signed_at: dt.datetime | None,
    now: dt.datetime | None = None,
    trust: Sequence[x509.Certificate] | None = None,
    crls: Sequence[x509.CertificateRevocationList] = (),
) -> list[CertificateProblem]:
    """Why ``cert`` should not be relied on for a signature made at ``signed_at`` (if anything).

    Without a certified timestamp the signing time is the signer's own claim, so a certificate
    that has expired since is reported too (code ``expired``), not only one that was invalid
    when the signature says it was made.
    """
    now = now or utcnow()
    problems: list[CertificateProblem] = []
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if signed_at is not None and not start <= signed_at <= end:
        problems.append(
            CertificateProblem(
                "not-valid-at-signing",
                f"the certificate was not valid when the signature was made "
                f"({signed_at:%Y-%m-%d %H:%M} UTC; valid {start:%Y-%m-%d} to {end:%Y-%m-%d})",
            )
        )
    if now > end:
        problems.append(CertificateProblem("expired", f"the certificate expired on {end:%Y-%m-%d}"))
    elif now < start:
        problems.append(
            CertificateProblem(
                "not-yet-valid", f"the certificate is valid only from {start:%Y-%m-%d}"
            )
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not (usage.digital_signature or usage.content_commitment):
            problems.append(
                CertificateProblem(
                    "key-usage", "the certificate's key usage does not allow signing"
                )
            )
    except x509.ExtensionNotFound:
        pass
    issuer = None
    if trust is not None:
        issuer = find_issuer(cert, trust)
        if issuer is None:
            problems.append(
                CertificateProblem(
                    "untrusted",
                    f"untrusted: {subject_name(cert)!r} was issued by "
                    f"{subject_name(cert, issuer=True)!r}, which is not in the trust list",
                )
            )
        elif issuer != cert and now > issuer.not_valid_after_utc:
            problems.append(
                CertificateProblem(
                    "expired",
                    f"the issuing CA {subject_name(issuer)!r} expired on "
                    f"{issuer.not_valid_after_utc:%Y-%m-%d}",
                )
            )
    problems.extend(_revocation_problems(cert, issuer, trust or (), crls))
    return problems


def _revocation_problems(
    cert: x509.Certificate,
    issuer: x509.Certificate | None,
    trust: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
) -> list[CertificateProblem]:
    problems: list[CertificateProblem] = []
    for crl in crls:
        if crl.issuer != cert.issuer:
            continue
        signer = issuer if issuer is not None and issuer != cert else None
        candidates = [signer] if signer else [c for c in trust if c.subject == crl.issuer]
        if candidates and not any(crl.is_signature_valid(c.public_key()) for c in candidates):  # type: ignore[arg-type]
            problems.append(
                CertificateProblem(
                    "crl-invalid",
                    f"the revocation list of {subject_name(cert, issuer=True)!r} has an invalid "
                    "signature: ignored",
                )
            )
            continue
        revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if revoked is not None:
            when = revoked.revocation_date_utc
            unverified = "" if candidates else " (the list's signature was not checked: no --trust)"
            problems.append(
                CertificateProblem(
                    "revoked", f"the certificate was revoked on {when:%Y-%m-%d}{unverified}"
                )
            )
    return problems


# ----------------------------------------------------------------------------- a site's own CA


@dataclass(frozen=True)
class SiteFiles:
    """What ``generate_site`` wrote."""

    ca_key: Path
    ca_certificate: Path
    key: Path
    certificate: Path


def _new_key(algorithm: str) -> PrivateKey:
    if algorithm == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if algorithm == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key algorithm {algorithm!r}; choose rsa or ecdsa")


def parse_subject(subject: str) -> x509.Name:
    """An X.509 name from ``CN=...,O=...`` text (RFC 4514); a bare word becomes the CN."""
    text = subject.strip()
    if "=" not in text:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])
    try:
        return x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise ValueError(f"cannot read the subject {subject!r}: {exc}") from exc


def build_certificate(
    subject: x509.Name,
    key: PrivateKey,
    *,
    issuer: x509.Certificate | None = None,
    issuer_key: PrivateKey | None = None,
    ca: bool = False,
    not_before: dt.datetime | None = None,
    days: int = 730,
) -> x509.Certificate:
    """A CA (self-signed when no issuer) or a signing certificate issued by ``issuer``."""
    start = not_before or utcnow() - dt.timedelta(minutes=5)
    signing_key = issuer_key or key
    usage = x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=not ca,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    return builder.sign(signing_key, hashes.SHA256())


def issue_crl(
    ca_key: PrivateKey,
    ca_certificate: x509.Certificate,
    revoked_serials: Iterable[int],
    *,
    revoked_at: dt.datetime | None = None,
    days: int = 30,
) -> x509.CertificateRevocationList:
    """A revocation list signed by the site CA, listing ``revoked_serials``."""
    now = utcnow()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_certificate.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=days))
    )
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(revoked_at or now - dt.timedelta(minutes=1))
            .build()
        )
    return builder.sign(ca_key, hashes.SHA256())


def private_key_pem(key: PrivateKey, passphrase: bytes | None) -> bytes:
    """PKCS#8 PEM, encrypted with the best available scheme unless ``passphrase`` is None."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (never world-readable, not even briefly)."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(handle, data)
    finally:
        os.close(handle)
    os.chmod(path, mode)  # the umask may have narrowed a certificate's 0644


def generate_site(
    out_dir: str | Path,
    *,
    algorithm: str = "ecdsa",
    days: int = 730,
    subject: str = "CN=medforensics signer",
    passphrase: bytes | None,
) -> SiteFiles:
    """A site CA and a signing key and certificate issued by it, written to ``out_dir``.

    Private keys are written encrypted with ``passphrase``, mode 0600; ``passphrase=None``
    writes them unencrypted (the caller must have been asked for that explicitly). Existing
    files are never overwritten.
    """
    if days < 1:
        raise ValueError("--days must be at least 1")
    folder = Path(out_dir)
    files = SiteFiles(
        folder / "ca-key.pem", folder / "ca-cert.pem", folder / "signer-key.pem",
        folder / "signer-cert.pem",
    )  # fmt: skip
    existing = [p for p in vars(files).values() if p.exists()]
    if existing:
        names = ", ".join(str(p) for p in existing)
        raise FileExistsError(
            f"{names} already exist(s): choose another --out (keys are never overwritten)"
        )
    name = parse_subject(subject)
    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = common[0].value if common else "medforensics"
    ca_common = f"{value.decode() if isinstance(value, bytes) else value} CA"
    ca_name = x509.Name(
        [a for a in name if a.oid != NameOID.COMMON_NAME]
        + [x509.NameAttribute(NameOID.COMMON_NAME, ca_common)]
    )
    ca_key, key = _new_key(algorithm), _new_key(algorithm)
    ca_cert = build_certificate(ca_name, ca_key, ca=True, days=max(days * 2, 3650))
    cert = build_certificate(name, key, issuer=ca_cert, issuer_key=ca_key, days=days)
    folder.mkdir(parents=True, exist_ok=True)
    write_new_file(files.ca_key, private_key_pem(ca_key, passphrase), 0o600)
    write_new_file(files.ca_certificate, certificate_pem(ca_cert), 0o644)
    write_new_file(files.key, private_key_pem(key, passphrase), 0o600)
    write_new_file(files.certificate, certificate_pem(cert), 0o644)
    return files
