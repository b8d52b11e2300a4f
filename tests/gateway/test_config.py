"""Gateway settings: TOML and JSON files, overrides, and errors that name the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medforensics.gateway.config import ConfigError, Destination, GatewayConfig, load_config

TOML = """
[gateway]
ae_title = "GW1"
port = 11113
allowed_calling_aes = ["CT01", "ORTHANC"]
spool_dir = "spool"
quiet_seconds = 2.5
detector = "classical"

[destination]
ae_title = "PACS"
host = "10.0.0.5"
port = 104

[policy]
authentic = ["forward"]
inconclusive = ["forward", "attach", "alert"]
attach = ["sr"]

[alerts]
webhook_url = "http://127.0.0.1:9/hook"
timeout_s = 2
"""


def test_toml_file_fills_every_table(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(TOML)
    config = load_config(path)
    assert config.ae_title == "GW1" and config.port == 11113
    assert config.allowed_calling_aes == ("CT01", "ORTHANC")
    assert config.spool_dir == tmp_path / "spool"  # relative to the file, not the cwd
    assert config.destination == Destination("PACS", "10.0.0.5", 104)
    assert config.policy.actions_for("authentic") == ("forward",)
    assert config.policy.actions_for("inconclusive") == ("forward", "attach", "alert")
    # outcomes the file does not mention keep their defaults
    assert config.policy.actions_for("manipulated") == ("quarantine", "alert")
    assert config.policy.attach == ("sr",)
    assert config.webhook_url == "http://127.0.0.1:9/hook" and config.webhook_timeout_s == 2.0
    assert config.index_url == f"sqlite:///{tmp_path / 'spool' / 'gateway.db'}"


def test_json_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps({"gateway": {"spool_dir": str(tmp_path / "s"), "port": 4242}}))
    config = load_config(path, port=5000, detector=None)
    assert config.port == 5000 and config.detector == "auto"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[gateway]\nspool_dir = "s"\nprot = 1\n', "unknown key(s) in [gateway]: ['prot']"),
        ("[gateway]\nport = 1\n", "spool_dir is required"),
        ('[gateway]\nspool_dir = "s"\nae_title = "A\\\\B"\n', "not a valid AE title"),
        ('[gateway]\nspool_dir = "s"\n[policy]\nmanipulated = ["alert"]\n', "needs 'forward' or"),
        ('[gateway]\nspool_dir = "s"\n[policy]\nauthentic = ["send"]\n', "unknown action"),
        ('[gateway]\nspool_dir = "s"\n[destination]\nhost = "x"\n', "needs ae_title, host"),
        ('[gateway]\nspool_dir = "s"\n[extra]\n', "unknown table"),
        ("[gateway\n", "is not valid TOML"),
    ],
)
def test_bad_settings_name_the_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "absent.toml")


def test_small_pdu_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_pdu"):
        GatewayConfig(spool_dir=tmp_path, max_pdu=1000)
