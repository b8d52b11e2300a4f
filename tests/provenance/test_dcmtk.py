"""Interoperability with DCMTK's ``dcmsign``, both ways, byte for byte where it matters."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from medforensics.provenance.mac import mac_chunks
from medforensics.provenance.sign import sign_file
from medforensics.provenance.verify import VerifyOptions, verify_file
from tests.provenance import Pki, edit, flip_pixel, make_pki, needs_dcmtk

pytestmark = needs_dcmtk


def _dcmsign(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["dcmsign", *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def _with_sequence(source: Path, target: Path) -> Path:
    ds = pydicom.dcmread(source)
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-D3000", "SRT", "Chest"
    ds.AnatomicRegionSequence = [code]
    ds.InstitutionName = "ODD"  # odd length: padded
    ds.save_as(target)
    return target


@pytest.fixture(params=["rsa", "ecdsa"])
def pki(request: pytest.FixtureRequest, tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki", request.param)


@pytest.mark.parametrize("profile", ["base", "creator"])
def test_dcmsign_verifies_our_signatures(
    pki: Pki, good_dicom: Path, tmp_path: Path, profile: str
) -> None:
    source = _with_sequence(good_dicom, tmp_path / "seq.dcm")
    signed = sign_file(source, tmp_path / "signed.dcm", pki.signer, profile=profile).target
    result = _dcmsign("--verify", signed, "+cf", pki.ca_cert_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Signature Verification : OK" in result.stdout + result.stderr
    # and DCMTK sees a change as we do
    tampered = flip_pixel(signed, tmp_path / "tampered.dcm")
    result = _dcmsign("--verify", tampered, "+cf", pki.ca_cert_path)
    assert result.returncode != 0
    assert "signature is invalid" in result.stdout + result.stderr


def test_dcmsign_verifies_our_signature_after_implicit_vr(
    pki: Pki, good_dicom: Path, tmp_path: Path
) -> None:
    signed = sign_file(good_dicom, tmp_path / "signed.dcm", pki.signer).target
    implicit = tmp_path / "implicit.dcm"
    subprocess.run(["dcmconv", "+ti", str(signed), str(implicit)], check=True, timeout=60)
    assert pydicom.dcmread(implicit).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    assert _dcmsign("--verify", implicit, "+cf", pki.ca_cert_path).returncode == 0
    assert verify_file(implicit).status == "valid"


def test_we_verify_dcmsign_signatures(pki: Pki, good_dicom: Path, tmp_path: Path) -> None:
    source = _with_sequence(good_dicom, tmp_path / "seq.dcm")
    signed = tmp_path / "dcmtk.dcm"
    result = _dcmsign(
        "--sign", pki.key_path, pki.cert_path, "-pw", "+m2", "+sp", "1", source, signed
    )
    assert result.returncode == 0, result.stderr
    report = verify_file(signed, VerifyOptions(trust=(pki.ca_cert,)))
    assert report.status == "valid", report.summary()
    check = report.signatures[0]
    assert check.signer == "Test signer" and check.purpose == "Author's Signature"
    # DCMTK stores no per-element digests: a change is found but cannot be named
    changed = verify_file(edit(signed, tmp_path / "renamed.dcm", PatientName="X^Y"))
    assert changed.status == "invalid"
    assert "cannot be named" in changed.signatures[0].changed[0]
    removed = pydicom.dcmread(signed)
    del removed.Manufacturer
    removed.save_as(tmp_path / "removed.dcm")
    assert verify_file(tmp_path / "removed.dcm").signatures[0].changed == [
        "signed attribute (0008,0070) Manufacturer removed"
    ]


def test_we_verify_dcmsign_default_ripemd160_signature(tmp_path: Path, good_dicom: Path) -> None:
    pki = make_pki(tmp_path / "pki", "rsa")
    signed = tmp_path / "dcmtk.dcm"
    assert (
        _dcmsign("--sign", pki.key_path, pki.cert_path, "-pw", good_dicom, signed).returncode == 0
    )
    report = verify_file(signed)
    if any("not available" in p for c in report.signatures for p in c.problems):
        pytest.skip("this OpenSSL has no RIPEMD-160")
    assert report.signatures[0].mac_algorithm == "RIPEMD160"
    assert report.status == "valid", report.summary()


def test_mac_stream_matches_dcmsign_byte_for_byte(good_dicom: Path, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", "ecdsa")
    source = _with_sequence(good_dicom, tmp_path / "seq.dcm")
    signed, dump = tmp_path / "dcmtk.dcm", tmp_path / "mac-input.bin"
    result = _dcmsign(
        "--sign", pki.key_path, pki.cert_path, "-pw", "+m2", "--dump", dump, source, signed
    )
    assert result.returncode == 0, result.stderr
    ds = pydicom.dcmread(signed)
    listed = ds.MACParametersSequence[0].DataElementsSigned
    ours = b"".join(mac_chunks(ds, [Tag(t) for t in listed], ds.DigitalSignaturesSequence[0]))
    assert ours == dump.read_bytes()
