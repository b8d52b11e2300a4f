"""Certificate problems are reported: expired, not yet valid, untrusted, revoked; site keys."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from medforensics.provenance.certs import (
    KeyFileError,
    PassphraseNeeded,
    generate_site,
    issue_crl,
    key_is_encrypted,
    load_certificate,
    load_crl,
    load_private_key,
)
from medforensics.provenance.sign import Signer, sign_file
from medforensics.provenance.verify import VerifyOptions, verify_file
from tests.provenance import encrypted_key_pem, make_pki

UTC = dt.UTC


def _codes(path: Path, options: VerifyOptions) -> list[str]:
    report = verify_file(path, options)
    return [p.code for check in report.signatures for p in check.certificate_problems]


def test_trusted_signer_is_valid_and_a_stranger_untrusted(good_dicom: Path, tmp_path: Path) -> None:
    site, stranger = make_pki(tmp_path / "site"), make_pki(tmp_path / "stranger", name="Stranger")
    signed = sign_file(good_dicom, tmp_path / "a.dcm", stranger.signer).target
    report = verify_file(signed, VerifyOptions(trust=(site.ca_cert,)))
    assert report.status == "untrusted"
    problem = report.signatures[0].certificate_problems[0]
    assert problem.code == "untrusted" and "'Stranger CA'" in problem.message
    assert report.signatures[0].intact  # the data is fine, the signer is unknown
    assert verify_file(signed, VerifyOptions(trust=(stranger.ca_cert,))).status == "valid"
    # trusting the signer certificate itself (pinning) works too
    assert verify_file(signed, VerifyOptions(trust=(stranger.cert,))).status == "valid"


def test_expired_certificate_is_reported(good_dicom: Path, tmp_path: Path) -> None:
    start = dt.datetime(2021, 3, 1, tzinfo=UTC)
    old = make_pki(tmp_path / "old", not_before=start, days=30)
    signed = sign_file(
        good_dicom, tmp_path / "a.dcm", old.signer, now=start + dt.timedelta(days=1)
    ).target
    options = VerifyOptions(trust=(old.ca_cert,))
    assert _codes(signed, options) == ["expired"]
    report = verify_file(signed, options)
    assert report.status == "untrusted" and "expired on 2021-03-31" in report.summary()
    # checked at a time inside the validity period, the same signature is valid
    during = VerifyOptions(trust=(old.ca_cert,), now=start + dt.timedelta(days=2))
    assert verify_file(signed, during).status == "valid"


def test_not_yet_valid_certificate_is_reported(good_dicom: Path, tmp_path: Path) -> None:
    start = dt.datetime.now(UTC) + dt.timedelta(days=10)
    future = make_pki(tmp_path / "future", not_before=start, days=30)
    signed = sign_file(
        good_dicom, tmp_path / "a.dcm", future.signer, now=start + dt.timedelta(days=1)
    ).target
    assert _codes(signed, VerifyOptions()) == ["not-yet-valid"]
    assert _codes(signed, VerifyOptions(now=start + dt.timedelta(days=100))) == ["expired"]


def test_signature_made_outside_the_validity_period_is_reported(
    good_dicom: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = dt.datetime.now(UTC) - dt.timedelta(days=1)
    site = make_pki(tmp_path / "site", not_before=start, days=30)
    monkeypatch.setattr(Signer, "check_valid", lambda self, now: None)
    backdated = sign_file(
        good_dicom, tmp_path / "a.dcm", site.signer, now=start - dt.timedelta(days=5)
    ).target
    report = verify_file(backdated, VerifyOptions(trust=(site.ca_cert,)))
    assert report.signatures[0].intact
    assert [p.code for p in report.signatures[0].certificate_problems] == ["not-valid-at-signing"]


def test_revoked_certificate_is_reported(good_dicom: Path, tmp_path: Path) -> None:
    site = make_pki(tmp_path / "site")
    signed = sign_file(good_dicom, tmp_path / "a.dcm", site.signer).target
    crl = issue_crl(site.ca_key, site.ca_cert, [site.cert.serial_number])
    crl_path = tmp_path / "site.crl"
    crl_path.write_bytes(crl.public_bytes(Encoding.DER))
    options = VerifyOptions(trust=(site.ca_cert,), crls=(load_crl(crl_path),))
    report = verify_file(signed, options)
    assert report.status == "untrusted"
    assert [p.code for p in report.signatures[0].certificate_problems] == ["revoked"]
    assert "revoked on" in report.summary()
    # a CRL that does not list the signer changes nothing
    other = issue_crl(site.ca_key, site.ca_cert, [12345])
    assert (
        verify_file(signed, VerifyOptions(trust=(site.ca_cert,), crls=(other,))).status == "valid"
    )


def test_forged_revocation_list_is_ignored(good_dicom: Path, tmp_path: Path) -> None:
    site, forger = make_pki(tmp_path / "site"), make_pki(tmp_path / "forger")
    signed = sign_file(good_dicom, tmp_path / "a.dcm", site.signer).target
    forged = issue_crl(forger.ca_key, site.ca_cert, [site.cert.serial_number])
    codes = _codes(signed, VerifyOptions(trust=(site.ca_cert,), crls=(forged,)))
    assert codes == ["crl-invalid"]


def test_generate_site_writes_encrypted_keys_only_readable_by_the_owner(tmp_path: Path) -> None:
    files = generate_site(tmp_path / "keys", algorithm="ecdsa", days=10, passphrase=b"s3cret",
                          subject="CN=CT 2,O=Hospital")  # fmt: skip
    for key in (files.key, files.ca_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key_is_encrypted(key)
        with pytest.raises(PassphraseNeeded):
            load_private_key(key)
        with pytest.raises(KeyFileError, match="wrong passphrase"):
            load_private_key(key, b"wrong")
    signer = Signer(load_private_key(files.key, b"s3cret"), load_certificate(files.certificate))
    assert signer.name == "CT 2"
    ca = load_certificate(files.ca_certificate)
    assert signer.certificate.issuer == ca.subject
    with pytest.raises(FileExistsError, match="never overwritten"):
        generate_site(tmp_path / "keys", passphrase=b"x")


def test_unencrypted_keys_only_when_asked(tmp_path: Path) -> None:
    files = generate_site(tmp_path / "plain", passphrase=None)
    assert not key_is_encrypted(files.key)
    assert load_private_key(files.key) is not None


def test_key_loading_errors_name_the_file(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    locked = tmp_path / "locked.pem"
    locked.write_bytes(encrypted_key_pem(pki.key, b"pw"))
    loaded = load_private_key(locked, b"pw")
    assert loaded.public_key().public_numbers() == pki.key.public_key().public_numbers()
    with pytest.raises(PassphraseNeeded, match=r"locked\.pem"):
        load_private_key(locked)
    with pytest.raises(KeyFileError, match=r"missing\.pem"):
        load_private_key(tmp_path / "missing.pem")
    with pytest.raises(KeyFileError, match=r"not an X\.509 certificate"):
        load_certificate(locked)
