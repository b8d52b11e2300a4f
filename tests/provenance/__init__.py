"""Helpers for the provenance tests: a small PKI made with ``cryptography``, DICOM re-encoding."""

from __future__ import annotations

import datetime as dt
import functools
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydicom.dataset import Dataset

from medforensics.provenance.certs import (
    PrivateKey,
    build_certificate,
    certificate_pem,
    parse_subject,
    private_key_pem,
)
from medforensics.provenance.sign import Signer, read_dicom

needs_dcmtk = pytest.mark.skipif(
    shutil.which("dcmsign") is None or shutil.which("dcmconv") is None,
    reason="DCMTK (dcmsign, dcmconv) is not installed",
)


@functools.cache
def rsa_key(index: int = 0) -> rsa.RSAPrivateKey:
    """RSA 2048 keys, made once per test session (key generation is the slow part)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def new_key(algorithm: str, index: int = 0) -> PrivateKey:
    return rsa_key(index) if algorithm == "rsa" else ec.generate_private_key(ec.SECP256R1())


@dataclass
class Pki:
    """A CA, a signer issued by it, and their PEM files (the signer key unencrypted)."""

    ca_key: PrivateKey
    ca_cert: x509.Certificate
    key: PrivateKey
    cert: x509.Certificate
    ca_cert_path: Path
    key_path: Path
    cert_path: Path

    @property
    def signer(self) -> Signer:
        return Signer(self.key, self.cert)


def make_pki(
    folder: Path,
    algorithm: str = "ecdsa",
    *,
    name: str = "Test signer",
    not_before: dt.datetime | None = None,
    days: int = 30,
    key_index: int = 0,
) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build_certificate(parse_subject(f"CN={name} CA"), ca_key, ca=True, days=3650,
                                not_before=not_before)  # fmt: skip
    key = new_key(algorithm, key_index)
    cert = build_certificate(
        parse_subject(f"CN={name}"), key, issuer=ca_cert, issuer_key=ca_key,
        not_before=not_before, days=days,
    )  # fmt: skip
    paths = folder / "ca.pem", folder / "signer.key", folder / "signer.pem"
    paths[0].write_bytes(certificate_pem(ca_cert))
    paths[1].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    paths[2].write_bytes(certificate_pem(cert))
    return Pki(ca_key, ca_cert, key, cert, *paths)


def encrypted_key_pem(key: PrivateKey, passphrase: bytes) -> bytes:
    return private_key_pem(key, passphrase)


def edit(path: Path, target: Path | None = None, **changes: object) -> Path:
    """Set attributes of a DICOM file (keyword=value) and save it to ``target`` (or in place)."""
    ds = read_dicom(path)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    out = target or path
    ds.save_as(out)
    return out


def flip_pixel(path: Path, target: Path | None = None, index: int = 100) -> Path:
    """Change one stored pixel value by one."""
    ds = read_dicom(path)
    pixels = bytearray(ds.PixelData)
    pixels[index * 2] ^= 1
    ds.PixelData = bytes(pixels)
    out = target or path
    ds.save_as(out)
    return out


def reencode(path: Path, target: Path, syntax: str) -> Path:
    """Write ``path`` again in another lossless transfer syntax (values unchanged)."""
    ds = read_dicom(path)
    source_little = ds.original_encoding[1] is not False
    target_little = syntax != pydicom.uid.ExplicitVRBigEndian
    ds.file_meta.TransferSyntaxUID = syntax
    if source_little == target_little:
        ds.save_as(target)
        return target
    # pydicom does not swap OB/OW bytes itself: swap the 16-bit pixel words by hand
    order = ("<u2", ">u2") if source_little else (">u2", "<u2")
    ds.PixelData = np.frombuffer(ds.PixelData, dtype=order[0]).astype(order[1]).tobytes()
    implicit = syntax == pydicom.uid.ImplicitVRLittleEndian
    pydicom.dcmwrite(
        target, ds, implicit_vr=implicit, little_endian=target_little, force_encoding=True
    )
    return target


def signature_items(path: Path) -> list[Dataset]:
    return list(pydicom.dcmread(path).get("DigitalSignaturesSequence", []))
