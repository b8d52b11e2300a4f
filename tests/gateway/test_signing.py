"""Signing on ingest and verifying on the way out (issue 11), against real associations.

Keys and certificates are made in the test (``tests.provenance.make_pki``). The analysis is a
stub that calls everything authentic (or the ``signature`` detector itself), so what decides
where a series goes here is the signature check alone.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pydicom
import pytest
from typer.testing import CliRunner

from medforensics.cli.main import build_app
from medforensics.detect import Detector, create_detector
from medforensics.detect.types import Detection
from medforensics.gateway import tables as t
from medforensics.gateway.app import Gateway
from medforensics.gateway.config import (
    ConfigError,
    Destination,
    GatewayConfig,
    SigningConfig,
    load_config,
    override_signing,
)
from medforensics.gateway.signing import with_signature_options
from medforensics.gateway.status import read_status
from medforensics.io.types import ImageVolume
from medforensics.provenance.certs import certificate_pem
from medforensics.provenance.sign import sign_file
from medforensics.provenance.verify import VerifyOptions, verify_file
from tests.gateway import CountingSCP, associate, http_recorder, write_phantom_series
from tests.provenance import Pki, encrypted_key_pem, flip_pixel, make_pki

pytest.importorskip("pynetdicom")
pytest.importorskip("cryptography")


class AuthenticDetector(Detector):
    """Calls every volume authentic: the signature check alone decides here."""

    name: ClassVar[str] = "always-authentic"

    def detect(self, volume: ImageVolume) -> Detection:
        return Detection(self.name, 0.0, "authentic")

    def describe(self) -> dict[str, object]:
        return {"name": self.name}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The gateway's keys: a site CA and a signer it issued."""
    return make_pki(tmp_path_factory.mktemp("gateway-pki"), "ecdsa", name="Gateway signer")


@pytest.fixture(scope="module")
def modality(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A modality that signs its own images, with a CA of its own."""
    return make_pki(tmp_path_factory.mktemp("modality-pki"), "ecdsa", name="CT scanner")


@pytest.fixture
def destination(tmp_path: Path) -> Iterator[CountingSCP]:
    peer = CountingSCP(save_dir=tmp_path / "received").start()
    yield peer
    peer.stop()


def trust_bundle(folder: Path, *pkis: Pki) -> Path:
    bundle = folder / "trust.pem"
    bundle.write_bytes(b"".join(certificate_pem(p.ca_cert) for p in pkis))
    return bundle


def start(
    tmp_path: Path,
    destination: CountingSCP,
    signing: SigningConfig,
    factory: Any = AuthenticDetector,
    **settings: Any,
) -> Gateway:
    values: dict[str, Any] = {
        "spool_dir": tmp_path / "spool",
        "port": 0,
        "quiet_seconds": 0.3,
        "retry_max_s": 1.0,
        "write_reports": False,
        "destination": Destination(destination.ae_title, "127.0.0.1", destination.port),
        "signing": signing,
        **settings,
    }
    config = GatewayConfig(**values)
    gateway = Gateway(config, detector_factory=factory)
    gateway.start()
    return gateway


def send(gateway: Gateway, paths: list[Path]) -> list[int]:
    assert gateway.address is not None
    assoc = associate(gateway.address[1])
    statuses = [int(assoc.send_c_store(path).Status) for path in paths]
    assoc.release()
    return statuses


def spooled(gateway: Gateway) -> list[Path]:
    assert gateway.spool is not None
    return sorted((gateway.spool.root / "incoming").rglob("*.dcm"))


def sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


# -- configuration -------------------------------------------------------------------------------


def test_signing_table_is_read_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[gateway]\nspool_dir = "spool"\n'
        '[signing]\nkey = "keys/signer.key"\ncert = "keys/signer.pem"\n'
        'passphrase_env = "MF_PASS"\nprofile = "creator"\nverify_before_forward = false\n'
        'trust = "keys/ca.pem"\ncrls = ["site.crl"]\n'
    )
    signing = load_config(path).signing
    assert signing is not None and signing.signs
    assert (signing.key, signing.cert) == (
        tmp_path / "keys/signer.key",
        tmp_path / "keys/signer.pem",
    )
    assert signing.passphrase_env == "MF_PASS" and signing.profile == "creator"
    assert signing.trust == tmp_path / "keys/ca.pem" and signing.crls == (tmp_path / "site.crl",)
    assert not signing.verify_before_forward
    # a trust list alone verifies without signing
    verify_only = SigningConfig(trust=tmp_path / "ca.pem")
    assert not verify_only.signs and verify_only.verify_before_forward
    # command-line overrides replace single settings
    changed = override_signing(load_config(path), sign_on_ingest=False, crls=["a.crl"])
    assert changed.signing is not None and not changed.signing.signs
    assert changed.signing.crls == (Path("a.crl"),) and changed.signing.profile == "creator"


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('key = "k"\ncert = "c"\nprofile = "full"\n', "signing.profile: 'full'"),
        ("sign_on_ingest = true\n", "needs signing.key and signing.cert"),
        ('key = "k"\n', "give both or neither"),
        ('key = "k"\ncert = "c"\nkeyfile = "x"\n', "unknown key(s) in [signing]: ['keyfile']"),
        ('key = "k"\ncert = "c"\npassphrase_env = "MF PASS"\n', "not an environment variable"),
    ],
)
def test_bad_signing_settings_name_the_file_and_key(
    tmp_path: Path, table: str, expected: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[gateway]\nspool_dir = "s"\n[signing]\n{table}')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)


def _encrypted(pki: Pki, folder: Path) -> Path:
    path = folder / "encrypted.key"
    path.write_bytes(encrypted_key_pem(pki.key, b"right passphrase"))
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing key", "signing.key: {key}: cannot read the private key"),
        ("wrong passphrase", "signing.key: {key}: cannot load the private key (wrong passphrase"),
        ("no passphrase", "signing.key: {key}: the private key is encrypted"),
        ("unset variable", "signing.passphrase_env: the environment variable MF_TEST_UNSET"),
        ("other certificate", "signing.key: {key} does not belong to the certificate"),
        ("expired certificate", "signing.cert: {cert}: the certificate of 'Old signer' is valid"),
    ],
)
def test_unusable_key_stops_the_gateway_at_start_up(
    tmp_path: Path,
    pki: Pki,
    modality: Pki,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    expected: str,
) -> None:
    key, cert, env = pki.key_path, pki.cert_path, None
    if case == "missing key":
        key = tmp_path / "absent.key"
    elif case in ("wrong passphrase", "no passphrase", "unset variable"):
        key = _encrypted(pki, tmp_path)
        env = {"wrong passphrase": "MF_TEST_PASS", "unset variable": "MF_TEST_UNSET"}.get(case)
        monkeypatch.setenv("MF_TEST_PASS", "wrong passphrase")
        monkeypatch.delenv("MF_TEST_UNSET", raising=False)
    elif case == "other certificate":
        cert = modality.cert_path
    else:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
        old = make_pki(tmp_path / "old", name="Old signer", not_before=past, days=1)
        key, cert = old.key_path, old.cert_path
    config = GatewayConfig(
        spool_dir=tmp_path / "spool",
        port=0,
        signing=SigningConfig(key=key, cert=cert, passphrase_env=env),
    )
    gateway = Gateway(config, detector_factory=AuthenticDetector)
    with pytest.raises(ConfigError) as caught:
        gateway.start()
    assert expected.format(key=key, cert=cert) in str(caught.value)
    assert gateway.scp is None and not (tmp_path / "spool").exists(), "started before failing"


def test_cli_start_up_error_names_config_file_and_key(tmp_path: Path, pki: Pki) -> None:
    key = _encrypted(pki, tmp_path)
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[gateway]\nspool_dir = "spool"\nport = 0\n[signing]\nkey = "{key}"\n'
        f'cert = "{pki.cert_path}"\npassphrase_env = "MF_TEST_PASS"\n'
    )
    result = CliRunner().invoke(
        build_app(),
        ["gateway", "run", "--config", str(path)],
        env={**os.environ, "MF_TEST_PASS": "not it"},
    )
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert str(path) in message and "signing.key" in message and "wrong passphrase" in message
    # the same settings from the command line alone
    flags = ["--spool", str(tmp_path / "spool"), "--port", "0", "--sign-cert", str(pki.cert_path)]
    result = CliRunner().invoke(
        build_app(), ["gateway", "run", *flags, "--sign-key", str(tmp_path / "absent.key")]
    )
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "signing.key" in message and "absent.key: cannot read the private key" in message


def test_auto_detector_checks_signatures_with_the_gateway_trust(tmp_path: Path, pki: Pki) -> None:
    signing = SigningConfig(trust=pki.ca_cert_path, crls=(tmp_path / "site.crl",))
    auto: Any = with_signature_options(create_detector("auto"), signing)
    checker = auto._get("signature")
    assert checker.trust == str(pki.ca_cert_path) and checker.crls == [str(tmp_path / "site.crl")]
    alone: Any = with_signature_options(create_detector("signature"), signing)
    assert alone.trust == str(pki.ca_cert_path)


# -- through the gateway -------------------------------------------------------------------------


def test_series_arrives_signed_and_verifies(
    tmp_path: Path, pki: Pki, modality: Pki, destination: CountingSCP
) -> None:
    series = write_phantom_series(tmp_path / "series", slices=3, size=64, seed=11)
    # the first image was signed by the modality: that signature is kept, beside ours
    sign_file(series[0], series[0], modality.signer)
    trust = trust_bundle(tmp_path, pki, modality)
    signing = SigningConfig(key=pki.key_path, cert=pki.cert_path, trust=trust)
    # the analysis is the signature check itself, with the gateway's trust list
    gateway = start(tmp_path, destination, signing, lambda: create_detector("signature"))
    try:
        # the first image twice: a resend must leave row and file with the same signature
        assert send(gateway, [*series, series[0]]) == [0] * 4
        assert gateway.wait_idle(30)
        assert gateway.spool is not None
        batch = gateway.spool.batch(1)
        rows = gateway.spool.instances(1, role=t.IMAGE)
        status = read_status(gateway.spool.engine, gateway.spool.root)
    finally:
        gateway.stop()
    assert (batch.outcome, batch.location) == ("authentic", t.GONE)
    notes = " ".join(n for r in json.loads(batch.results_json or "[]") for n in r.get("notes", []))
    assert "3 of 3 files carry valid signatures" in notes and "trust list" not in notes
    assert sorted(destination.received) == sorted(sop_uid(p) for p in series)
    options = VerifyOptions(trust=(pki.ca_cert, modality.ca_cert))
    ours = {row.sop_uid: row.signature_uid for row in rows}
    for received in sorted(destination.save_dir.glob("*.dcm")):  # type: ignore[union-attr]
        report = verify_file(received, options)
        assert report.status == "valid", report.summary()
        signers = {s.signer: s.uid for s in report.signatures}
        assert signers["Gateway signer"] == ours[sop_uid(received)]
    first = destination.save_dir / f"{sop_uid(series[0])}.dcm"  # type: ignore[operator]
    assert {s.signer for s in verify_file(first, options).signatures} == {
        "CT scanner",
        "Gateway signer",
    }
    assert (status.signed, status.verified, status.broken) == (3, 3, 0)
    if shutil.which("dcmsign"):  # DCMTK reads the gateway's signature too
        other = destination.save_dir / f"{sop_uid(series[1])}.dcm"  # type: ignore[operator]
        checked = subprocess.run(
            ["dcmsign", "--verify", str(other), "+cf", str(pki.ca_cert_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    shown = CliRunner().invoke(
        build_app(), ["gateway", "status", "--spool", str(tmp_path / "spool")]
    )
    assert "signed 3  verified 3  broken 0" in shown.output


def _remove_signatures(path: Path) -> None:
    ds = pydicom.dcmread(path)
    del ds.DigitalSignaturesSequence
    ds.save_as(path)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (flip_pixel, "Pixel Data changed"),
        (_remove_signatures, "the signature the gateway added on arrival"),
    ],
    ids=["pixel", "signature-removed"],
)
def test_change_in_the_spool_is_caught_on_the_way_out(
    tmp_path: Path, pki: Pki, destination: CountingSCP, change: Any, expected: str
) -> None:
    series = write_phantom_series(tmp_path / "series", slices=3, size=64, seed=12)
    signing = SigningConfig(key=pki.key_path, cert=pki.cert_path)
    with http_recorder() as hook:
        gateway = start(
            tmp_path, destination, signing, quiet_seconds=300, webhook_url=hook.url + "/alerts"
        )
        try:
            assert send(gateway, series) == [0] * 3
            files = spooled(gateway)
            assert len(files) == 3 and all(verify_file(p).status == "valid" for p in files)
            change(files[1])  # someone with access to the spool edits an image
            assert gateway.spool is not None
            assert gateway.spool.close_quiet_batches(0.0) == [1]
            assert gateway.wait_idle(30)
            batch = gateway.spool.batch(1)
            status = read_status(gateway.spool.engine, gateway.spool.root)
        finally:
            gateway.stop()
        alerts = [json.loads(body) for *_rest, body in hook.requests]
    assert destination.received == [], "a changed series reached the PACS"
    assert (batch.outcome, batch.location, batch.actions) == (
        "manipulated",
        t.IN_QUARANTINE,
        "quarantine,alert",
    )
    (alert,) = alerts
    (problem,) = alert["signatures"]
    assert problem["file"] == files[1].name and problem["where"] == "spool"
    assert any(expected in text for text in problem["changes"])
    assert (
        alert["findings"][0]["kind"] == "signature"
        and files[1].name in alert["findings"][0]["detail"]
    )
    quarantine = Path(alert["quarantine"])
    assert len(list(quarantine.glob("*.dcm"))) == 3
    assert json.loads((quarantine / "verdict.json").read_text())["reason"] == "broken signature"
    assert (status.signed, status.verified, status.broken) == (3, 2, 1)
    assert any(
        files[1].name in e["message"] and expected in e["message"] for e in status.last_errors
    )


def test_instance_arriving_with_a_broken_signature_is_quarantined(
    tmp_path: Path, pki: Pki, modality: Pki, destination: CountingSCP
) -> None:
    series = write_phantom_series(tmp_path / "series", slices=3, size=64, seed=13)
    for path in series:
        sign_file(path, path, modality.signer)
    flip_pixel(series[2])  # changed between the modality and the gateway
    signing = SigningConfig(key=pki.key_path, cert=pki.cert_path)
    gateway = start(tmp_path, destination, signing)
    try:
        assert send(gateway, series) == [0] * 3  # received and kept, never refused
        assert gateway.wait_idle(30)
        assert gateway.spool is not None
        batch = gateway.spool.batch(1)
        status = read_status(gateway.spool.engine, gateway.spool.root)
    finally:
        gateway.stop()
    assert destination.received == []
    assert (batch.outcome, batch.location) == ("manipulated", t.IN_QUARANTINE)
    results = json.loads(batch.results_json or "[]")
    (problem,) = [p for r in results for p in r.get("signature_problems", [])]
    assert problem["sop_instance_uid"] == sop_uid(series[2]) and problem["where"] == "arrival"
    assert "Pixel Data changed" in problem["changes"]
    assert (status.signed, status.verified, status.broken, status.quarantined) == (3, 2, 1, 3)
