"""Signing and verifying: valid signatures, named changes, lossless re-encodings, profiles."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pydicom
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from medforensics.provenance.sign import SigningError, sign_dataset, sign_file
from medforensics.provenance.verify import VerifyOptions, verify_dataset, verify_file
from tests.conftest import file_fingerprints
from tests.provenance import Pki, edit, flip_pixel, make_pki, reencode, signature_items


@pytest.fixture(params=["ecdsa", "rsa"])
def pki(request: pytest.FixtureRequest, tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki", request.param)


@pytest.fixture
def signed(pki: Pki, good_dicom: Path, tmp_path: Path) -> Path:
    return sign_file(good_dicom, tmp_path / "signed.dcm", pki.signer).target


def _trusting(pki: Pki) -> VerifyOptions:
    return VerifyOptions(trust=(pki.ca_cert,))


def test_signed_copy_verifies_and_carries_the_standard_attributes(
    pki: Pki, good_dicom: Path, signed: Path
) -> None:
    before = file_fingerprints(good_dicom)
    report = verify_file(signed, _trusting(pki))
    assert report.status == "valid", report.summary()
    check = report.signatures[0]
    assert check.intact and check.ok and check.pixel_data_signed
    assert check.signer == "Test signer" and check.mac_algorithm == "SHA256"
    assert check.purpose == "Source Signature"
    assert report.uncovered == []  # the base profile signs every public attribute
    ds = pydicom.dcmread(signed)
    parameters, item = ds.MACParametersSequence[0], ds.DigitalSignaturesSequence[0]
    assert parameters.MACCalculationTransferSyntaxUID == ExplicitVRLittleEndian
    assert parameters.MACAlgorithm == "SHA256" and parameters.MACIDNumber == item.MACIDNumber
    assert (
        0x7FE00010 in parameters.DataElementsSigned and 0x00100010 in parameters.DataElementsSigned
    )
    assert item.CertificateType == "X509_1993_SIG"
    assert item.DigitalSignatureDateTime.endswith("+0000")
    assert item.DigitalSignaturePurposeCodeSequence[0].CodingSchemeDesignator == "ASTM-sigpurpose"
    assert file_fingerprints(good_dicom) == before  # the source is never touched


def test_one_changed_pixel_is_named(signed: Path, tmp_path: Path) -> None:
    report = verify_file(flip_pixel(signed, tmp_path / "pixel.dcm"))
    assert report.status == "invalid"
    assert report.signatures[0].changed == ["Pixel Data changed"]


def test_one_changed_tag_is_named(signed: Path, tmp_path: Path) -> None:
    report = verify_file(edit(signed, tmp_path / "name.dcm", PatientName="DOE^JANE"))
    assert report.status == "invalid"
    assert report.signatures[0].changed == ["signed attribute (0010,0010) PatientName changed"]


def test_a_removed_tag_is_named(signed: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(signed)
    del ds.Manufacturer
    ds.save_as(tmp_path / "removed.dcm")
    changed = verify_file(tmp_path / "removed.dcm").signatures[0].changed
    assert changed == ["signed attribute (0008,0070) Manufacturer removed"]


def test_a_replaced_certificate_is_named(signed: Path, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other", "ecdsa", name="Impostor")
    ds = pydicom.dcmread(signed)
    ds.DigitalSignaturesSequence[0].CertificateOfSigner = other.cert.public_bytes(Encoding.DER)
    ds.save_as(tmp_path / "cert.dcm")
    check = verify_file(tmp_path / "cert.dcm").signatures[0]
    assert not check.intact and check.signer == "Impostor"
    assert check.changed[0].startswith("Certificate of Signer replaced")


def test_an_added_attribute_keeps_the_signature_but_is_reported(
    signed: Path, tmp_path: Path
) -> None:
    report = verify_file(edit(signed, tmp_path / "added.dcm", StationName="ADDED"))
    assert report.status == "valid"
    assert report.uncovered == ["(0008,1010) StationName"]


@pytest.mark.parametrize(
    "syntax",
    [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian],
    ids=["implicit", "deflated", "big-endian"],
)
def test_lossless_reencoding_keeps_the_signature_valid(
    signed: Path, tmp_path: Path, syntax: str
) -> None:
    copy = reencode(signed, tmp_path / "copy.dcm", syntax)
    assert pydicom.dcmread(copy).file_meta.TransferSyntaxUID == syntax
    report = verify_file(copy)
    assert report.status == "valid", report.summary()
    back = reencode(copy, tmp_path / "back.dcm", ExplicitVRLittleEndian)
    assert verify_file(back).status == "valid"
    # and a change after re-encoding is still named
    assert verify_file(flip_pixel(copy, tmp_path / "bad.dcm")).signatures[0].changed == [
        "Pixel Data changed"
    ]


def test_creator_profile_covers_pixels_and_uids_not_demographics(
    pki: Pki, good_dicom: Path, tmp_path: Path
) -> None:
    signed = sign_file(good_dicom, tmp_path / "creator.dcm", pki.signer, profile="creator").target
    elements = pydicom.dcmread(signed).MACParametersSequence[0].DataElementsSigned
    assert 0x7FE00010 in elements and 0x00080018 in elements and 0x0020000E in elements
    assert 0x00100010 not in elements
    assert verify_file(edit(signed, tmp_path / "renamed.dcm", PatientName="X^Y")).status == "valid"
    report = verify_file(flip_pixel(signed, tmp_path / "pixel.dcm"))
    assert report.signatures[0].changed == ["Pixel Data changed"]


def test_two_signatures_are_checked_separately(pki: Pki, signed: Path, tmp_path: Path) -> None:
    second = make_pki(tmp_path / "second", "ecdsa", name="Reviewer")
    twice = sign_file(signed, tmp_path / "twice.dcm", second.signer, profile="creator").target
    items = signature_items(twice)
    assert [int(i.MACIDNumber) for i in items] == [0, 1]
    report = verify_file(edit(twice, tmp_path / "renamed.dcm", PatientName="X^Y"))
    assert [c.intact for c in report.signatures] == [False, True]
    assert report.signatures[0].changed == ["signed attribute (0010,0010) PatientName changed"]


def test_in_place_signing_replaces_the_file(pki: Pki, good_dicom: Path) -> None:
    result = sign_file(good_dicom, good_dicom, pki.signer)
    assert result.target == good_dicom
    assert verify_file(good_dicom).status == "valid"


def test_signing_refuses_an_expired_certificate(good_dicom: Path, tmp_path: Path) -> None:
    old = make_pki(tmp_path / "old", not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC), days=30)
    with pytest.raises(SigningError, match="valid only from 2020-01-01"):
        sign_file(good_dicom, tmp_path / "x.dcm", old.signer)
    assert not (tmp_path / "x.dcm").exists()


def test_signing_rejects_a_key_that_does_not_match_the_certificate(tmp_path: Path) -> None:
    first, second = make_pki(tmp_path / "a"), make_pki(tmp_path / "b")
    with pytest.raises(SigningError, match="does not belong"):
        type(first.signer)(first.key, second.cert)


def test_unsigned_and_unreadable_files(good_dicom: Path, tmp_path: Path) -> None:
    assert verify_file(good_dicom).status == "unsigned"
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    report = verify_file(junk)
    assert report.status == "error" and "not a readable DICOM file" in (report.error or "")


def test_sign_dataset_without_digests_is_still_verifiable(pki: Pki, good_dicom: Path) -> None:
    ds = pydicom.dcmread(good_dicom)
    sign_dataset(ds, pki.signer, element_digests=False, purpose=None, mac_algorithm="SHA512")
    ds.PatientName = "CHANGED"
    check = verify_dataset(ds)[0]
    assert not check.intact and check.mac_algorithm == "SHA512"
    assert "cannot be named" in check.changed[0]


def test_signatures_inside_sequence_items_are_verified(pki: Pki, good_dicom: Path) -> None:
    ds = pydicom.dcmread(good_dicom)
    item = pydicom.Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "1", "99TEST", "note"
    sign_dataset(item, pki.signer, purpose=5)
    ds.ContentSequence = [item]
    [check] = verify_dataset(ds)
    assert check.intact and check.location == "dataset/ContentSequence[0]"
    item.CodeMeaning = "changed"
    [check] = verify_dataset(ds)
    assert check.changed == ["signed attribute (0008,0104) CodeMeaning changed"]
