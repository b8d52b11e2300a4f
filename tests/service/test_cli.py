"""``medforensics apikey`` and ``serve`` options, and settings from the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medforensics.cli.main import build_app
from medforensics.db import make_engine
from medforensics.service.auth import KeyStore, RateLimiter, hash_secret, parse_token
from medforensics.service.config import ServiceSettings, SettingsError
from medforensics.service.models import ApiKey

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(build_app(), list(args))
    return result.exit_code, result.stdout, result.stderr


def test_apikey_create_list_revoke(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    code, out, err = invoke("apikey", "create", "--tenant", "clinic-a", "--rate", "30/min",
                            "--data-dir", data)  # fmt: skip
    assert code == 0, err
    token = out.strip()
    parsed = parse_token(token)
    assert parsed is not None and "not shown again" in err
    key_id, secret = parsed
    # only the hash is stored
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'medforensics.db'}")
    keys = KeyStore(engine)
    (stored,) = keys.list()
    assert stored.id == key_id and stored.secret_sha256 == hash_secret(secret)
    assert secret not in json.dumps([stored.id, stored.tenant, stored.secret_sha256, stored.label])
    assert keys.authenticate(token).rate_per_min == 30

    code, out, _ = invoke("apikey", "create", "--tenant", "clinic-b", "--read-only", "--json",
                          "--data-dir", data)  # fmt: skip
    created = json.loads(out)
    assert code == 0 and created["scopes"] == ["read"] and created["key"].startswith("mf_")

    code, out, _ = invoke("apikey", "list", "--data-dir", data)
    assert code == 0 and key_id in out and "clinic-b" in out and secret not in out
    code, out, _ = invoke("apikey", "list", "--tenant", "clinic-a", "--data-dir", data)
    assert "clinic-b" not in out

    code, _, err = invoke("apikey", "revoke", key_id, "--data-dir", data)
    assert code == 0 and "revoked" in err
    code, out, _ = invoke("apikey", "list", "--data-dir", data)
    assert "revoked" in out
    code, _, err = invoke("apikey", "revoke", key_id, "--data-dir", data)
    assert code == 1 and "no active key" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--tenant", "bad tenant!"), "not valid"),
        (("--tenant", "ok", "--rate", "fast"), "is not a rate"),
        (("--tenant", "ok", "--rate", "0/min"), "is not a rate"),
    ],
)
def test_apikey_create_refuses_bad_options(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    code, _, err = invoke("apikey", "create", *args, "--data-dir", str(tmp_path))
    assert code == 2 and message in err


def test_serve_refuses_an_unknown_detector(tmp_path: Path) -> None:
    code, _, err = invoke("serve", "--detector", "no-such", "--data-dir", str(tmp_path))
    assert code == 2 and "no-such" in err


def test_serve_refuses_bad_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDFORENSICS_WORKERS", "many")
    code, _, err = invoke("serve", "--data-dir", str(tmp_path))
    assert code == 2 and "MEDFORENSICS_WORKERS" in err


def test_settings_from_environment(tmp_path: Path) -> None:
    settings = ServiceSettings.from_env(
        {
            "MEDFORENSICS_DATA": str(tmp_path),
            "MEDFORENSICS_DB_URL": "postgresql+psycopg://u@h/db",
            "MEDFORENSICS_WORKERS": "4",
            "MEDFORENSICS_QUEUE_LIMIT": "7",
            "MEDFORENSICS_LOG_PHI": "yes",
            "MEDFORENSICS_PLUGINS": "a.b, c.d",
            "MEDFORENSICS_RETENTION_DAYS": "0.5",
        }
    )
    assert settings.data_dir == tmp_path and settings.database_url.startswith("postgresql")
    assert (settings.workers, settings.queue_limit, settings.log_phi) == (4, 7, True)
    assert settings.plugins == ("a.b", "c.d") and settings.retention_days == 0.5
    assert settings.host == "127.0.0.1"  # loopback unless told otherwise
    default = ServiceSettings.from_env({"MEDFORENSICS_DATA": str(tmp_path)})
    assert default.database_url == f"sqlite:///{tmp_path / 'medforensics.db'}"
    assert default.log_phi is False
    with pytest.raises(SettingsError, match="MEDFORENSICS_LOG_PHI"):
        ServiceSettings.from_env({"MEDFORENSICS_LOG_PHI": "maybe"})
    with pytest.raises(SettingsError, match="queue_limit"):
        ServiceSettings(queue_limit=0)
    with pytest.raises(SettingsError, match="worker_mode"):
        ServiceSettings(worker_mode="fibre")  # type: ignore[arg-type]


def test_rate_limiter_refills() -> None:
    limiter = RateLimiter()
    assert [limiter.acquire("k", 2, now=0.0) for _ in range(2)] == [0.0, 0.0]
    wait = limiter.acquire("k", 2, now=0.0)
    assert wait == pytest.approx(30.0)
    assert limiter.acquire("k", 2, now=31.0) == 0.0


def test_revoked_and_scopes_are_enforced_by_the_store(tmp_path: Path) -> None:
    keys = KeyStore(make_engine(f"sqlite:///{tmp_path / 'k.db'}"))
    created = keys.create("t", scopes=("read",), label="x")
    principal = keys.authenticate(created.token)
    assert principal.scopes == frozenset({"read"}) and principal.tenant == "t"
    assert isinstance(keys.list()[0], ApiKey)
    with pytest.raises(ValueError, match="scopes"):
        keys.create("t", scopes=("admin",))
