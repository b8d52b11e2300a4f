"""``medforensics sign``, ``verify``, ``keys init`` and ``audit`` end to end with CliRunner."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from medforensics.cli.main import build_app
from medforensics.db import make_engine
from medforensics.provenance.audit import AuditLog
from medforensics.provenance.certs import key_is_encrypted, load_private_key
from tests.conftest import WrittenSeries, file_fingerprints, write_series
from tests.provenance import Pki, flip_pixel, make_pki


def _run(*args: str | Path, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    return CliRunner().invoke(
        build_app(), [str(a) for a in args], env=env, input=stdin, catch_exceptions=False
    )


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def series(tmp_path: Path) -> WrittenSeries:
    return write_series(tmp_path / "series", n_slices=3, shuffle=False)


def _sign(pki: Pki, *inputs: Path | str) -> Result:
    return _run("sign", *inputs, "--key", pki.key_path, "--cert", pki.cert_path)


def test_sign_writes_copies_and_leaves_the_inputs_alone(
    pki: Pki, series: WrittenSeries, tmp_path: Path
) -> None:
    before = file_fingerprints(series.folder)
    result = _sign(pki, series.folder, "--out", tmp_path / "out", "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    assert file_fingerprints(series.folder) == before
    signed = sorted((tmp_path / "out" / "series").glob("*.dcm"))
    assert [p.name for p in signed] == [p.name for p in series.paths]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["signer"] == "Test signer" and len(summary["files"]) == 3
    # a second run refuses to overwrite the signed copies
    again = _sign(pki, series.folder, "--out", tmp_path / "out")
    assert again.exit_code == 2 and "never overwrite" in again.output


def test_sign_needs_a_destination_and_never_guesses(pki: Pki, series: WrittenSeries) -> None:
    result = _sign(pki, series.paths[0])
    assert result.exit_code == 2 and "--out DIR, or --in-place" in result.output


def test_sign_in_place(pki: Pki, series: WrittenSeries) -> None:
    assert _sign(pki, series.paths[0], "--in-place").exit_code == 0
    assert _run("verify", series.paths[0]).exit_code == 0


def test_sign_with_an_encrypted_key_reads_the_passphrase(
    pki: Pki, series: WrittenSeries, tmp_path: Path
) -> None:
    from tests.provenance import encrypted_key_pem

    locked = tmp_path / "locked.pem"
    locked.write_bytes(encrypted_key_pem(pki.key, b"open sesame"))
    args = ("sign", series.paths[0], "--key", locked, "--cert", pki.cert_path)
    ok = _run(*args, "--out", tmp_path / "a", "--passphrase-env", "PW", env={"PW": "open sesame"})
    assert ok.exit_code == 0, ok.output
    prompted = _run(*args, "--out", tmp_path / "b", stdin="open sesame\n")
    assert prompted.exit_code == 0, prompted.output
    wrong = _run(*args, "--out", tmp_path / "c", "--passphrase-env", "PW", env={"PW": "nope"})
    assert wrong.exit_code == 2 and "wrong passphrase" in wrong.output


def test_verify_exit_codes_and_messages(pki: Pki, series: WrittenSeries, tmp_path: Path) -> None:
    assert _sign(pki, series.folder, "--out", tmp_path / "out").exit_code == 0
    folder = tmp_path / "out" / "series"
    valid = _run("verify", folder, "--trust", pki.ca_cert_path)
    assert valid.exit_code == 0, valid.output
    assert valid.output.count("valid") >= 3

    flip_pixel(folder / series.paths[1].name)
    invalid = _run("verify", folder, "--json", tmp_path / "v.json")
    assert invalid.exit_code == 1
    assert "Pixel Data changed" in invalid.output
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["counts"] == {"valid": 2, "invalid": 1}
    broken = next(f for f in report["files"] if f["status"] == "invalid")
    assert broken["signatures"][0]["changed"] == ["Pixel Data changed"]

    unsigned = _run("verify", series.paths[0])
    assert unsigned.exit_code == 1 and "unsigned" in unsigned.output
    assert _run("verify", series.paths[0], "--allow-unsigned").exit_code == 0

    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"junk")
    assert _run("verify", junk, folder).exit_code == 2


def test_verify_reports_an_untrusted_signer(
    pki: Pki, series: WrittenSeries, tmp_path: Path
) -> None:
    stranger = make_pki(tmp_path / "stranger", name="Stranger")
    assert _sign(pki, series.paths[0], "--out", tmp_path / "out").exit_code == 0
    result = _run(
        "verify", tmp_path / "out" / series.paths[0].name, "--trust", stranger.ca_cert_path,
        "--json", "-",
    )  # fmt: skip
    assert result.exit_code == 1
    report = json.loads(result.output)
    problems = report["files"][0]["signatures"][0]["certificate_problems"]
    assert report["files"][0]["status"] == "untrusted" and problems[0]["code"] == "untrusted"


def test_keys_init_writes_encrypted_keys(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    result = _run(
        "keys", "init", "--out", out, "--algorithm", "ecdsa", "--days", "30",
        "--subject", "CN=CT 1,O=Test Hospital", "--passphrase-env", "PW", env={"PW": "pw-123"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ("ca-key.pem", "signer-key.pem"):
        key = out / name
        assert key_is_encrypted(key) and stat.S_IMODE(key.stat().st_mode) == 0o600
        assert load_private_key(key, b"pw-123") is not None
    # the new keys sign, and the CA verifies
    series = write_series(tmp_path / "s", n_slices=1, shuffle=False)
    signed = _run(
        "sign", series.paths[0], "--key", out / "signer-key.pem", "--cert",
        out / "signer-cert.pem", "--out", tmp_path / "signed", "--passphrase-env", "PW",
        env={"PW": "pw-123"},
    )  # fmt: skip
    assert signed.exit_code == 0, signed.output
    checked = _run("verify", tmp_path / "signed", "--trust", out / "ca-cert.pem")
    assert checked.exit_code == 0, checked.output


def test_keys_init_refuses_to_write_unencrypted_keys_unless_asked(tmp_path: Path) -> None:
    empty = _run("keys", "init", "--out", tmp_path / "a", "--passphrase-env", "PW", env={"PW": ""})
    assert empty.exit_code == 2 and "--no-encrypt" in empty.output
    assert not (tmp_path / "a").exists()
    no_terminal = _run("keys", "init", "--out", tmp_path / "b", stdin="")
    assert no_terminal.exit_code == 2 and not (tmp_path / "b").exists()
    plain = _run("keys", "init", "--out", tmp_path / "c", "--no-encrypt", "--algorithm", "ecdsa")
    assert plain.exit_code == 0 and "UNENCRYPTED" in plain.output
    assert not key_is_encrypted(tmp_path / "c" / "signer-key.pem")
    again = _run("keys", "init", "--out", tmp_path / "c", "--no-encrypt")
    assert again.exit_code == 2 and "never overwritten" in again.output


@pytest.fixture
def audit_db(tmp_path: Path) -> tuple[str, Engine]:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    engine = make_engine(url)
    log = AuditLog(engine)
    for i in range(3):
        log.append(action="scan", actor="cli-test", inputs={}, result={"verdict": "authentic",
                   "score": 0.25 * i})  # fmt: skip
    return url, engine


def test_audit_verify_head_and_list(audit_db: tuple[str, Engine]) -> None:
    url, engine = audit_db
    head = _run("audit", "head", "--db", url)
    assert head.exit_code == 0 and len(head.output.strip()) == 64
    ok = _run("audit", "verify", "--db", url, "--expect-head", head.output.strip())
    assert ok.exit_code == 0 and "intact" in ok.output
    listed = _run("audit", "list", "--db", url, "--limit", "2", "--json", "-")
    assert [e["seq"] for e in json.loads(listed.output)["entries"]] == [3, 2]
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    altered = _run("audit", "verify", "--db", url, "--json", "-")
    assert altered.exit_code == 1
    assert json.loads(altered.output)["problems"][0]["seq"] == 2


def test_audit_without_a_database_says_so(tmp_path: Path) -> None:
    result = _run("audit", "verify", "--db", f"sqlite:///{tmp_path / 'missing.db'}")
    assert result.exit_code == 2 and "no database" in result.output
    assert not (tmp_path / "missing.db").exists()
