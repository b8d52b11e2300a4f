"""Gateway settings: frozen dataclasses read from a TOML or JSON file, checked on load.

A configuration file has up to six tables; every key is optional except the spool folder::

    [gateway]
    ae_title = "MEDFORENSICS"
    host = "0.0.0.0"
    port = 11112
    allowed_calling_aes = ["CT01", "ORTHANC"]   # empty: any calling AE
    spool_dir = "/var/spool/medforensics"
    quiet_seconds = 10            # a series is complete after this long without a new instance
    detector = "auto"

    [destination]                 # where checked series go (C-STORE SCU)
    ae_title = "PACS"
    host = "10.0.0.5"
    port = 104

    [policy]                      # what each verdict does
    authentic = ["forward", "attach"]
    manipulated = ["quarantine", "alert"]

    [alerts]
    webhook_url = "https://alerts.example/hook"
    timeout_s = 5

    [tls]                         # optional, for the SCP
    cert = "/etc/medforensics/gateway.pem"
    key = "/etc/medforensics/gateway.key"

    [signing]                     # optional: sign on ingest, verify on the way out
    key = "/etc/medforensics/keys/signer-key.pem"
    cert = "/etc/medforensics/keys/signer-cert.pem"
    passphrase_env = "MF_PASSPHRASE"
    profile = "base"              # or "creator"
    trust = "/etc/medforensics/keys/ca-cert.pem"
    crls = ["/etc/medforensics/keys/site.crl"]

Unknown keys are errors, so a typo never silently leaves a default in place.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args

Action = Literal["forward", "attach", "quarantine", "alert"]
#: what a complete series can end up as: the detector's verdicts, ``error`` (could not be
#: analysed) and ``passthrough`` (nothing to analyse: no pixels, or our own result objects)
Outcome = Literal["authentic", "manipulated", "inconclusive", "error", "passthrough"]
ACTIONS: tuple[str, ...] = get_args(Action)
OUTCOMES: tuple[str, ...] = get_args(Outcome)
#: result objects that ``attach`` forwards with a series (keys of ``ReportFiles.dicom``)
ATTACHABLE = ("sr", "sc", "pdf", "seg")

DEFAULT_MAX_PDU = 65536
#: signature profiles the gateway can sign with (``medforensics.provenance.profiles``)
SIGNING_PROFILES = ("base", "creator")


class ConfigError(ValueError):
    """A gateway setting is missing or unusable; the message names the file and the key."""


@dataclass(frozen=True)
class TlsConfig:
    """TLS for DICOM associations (PS3.15 basic TLS profile).

    Attributes:
        cert: PEM certificate chain presented by this side.
        key: PEM private key of ``cert``.
        ca: PEM bundle that peers' certificates must chain to; when set, the SCP requires a
            client certificate (mutual TLS) and the SCU verifies the destination.
    """

    cert: Path
    key: Path
    ca: Path | None = None


@dataclass(frozen=True)
class SigningConfig:
    """DICOM digital signatures in the gateway (``medforensics.provenance``).

    Attributes:
        key: the signing private key (PEM or DER, RSA or EC); needed to sign on ingest.
        cert: the X.509 certificate of ``key``.
        passphrase_env: environment variable holding the key's passphrase (encrypted keys).
        profile: ``base`` (every signable attribute) or ``creator`` (leaves out patient and
            study descriptions, so demographics can be corrected without breaking it).
        sign_on_ingest: sign every instance as it is spooled, before it is acknowledged
            (None, the default: when a key is given).
        verify_before_forward: verify every instance's signatures before it leaves the spool;
            a broken one quarantines its series instead of forwarding it.
        trust: CA bundle that signers' certificates are checked against (verification and the
            ``signature`` detector); None: trust is not evaluated.
        crls: certificate revocation lists to consult.
    """

    key: Path | None = None
    cert: Path | None = None
    passphrase_env: str | None = None
    profile: str = "base"
    sign_on_ingest: bool | None = None
    verify_before_forward: bool = True
    trust: Path | None = None
    crls: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if self.profile not in SIGNING_PROFILES:
            raise ConfigError(
                f"signing.profile: {self.profile!r} is not a profile; use "
                f"{' or '.join(SIGNING_PROFILES)}"
            )
        if self.sign_on_ingest and self.key is None:
            raise ConfigError(
                "signing.sign_on_ingest needs signing.key and signing.cert (or set "
                "sign_on_ingest = false to verify only)"
            )
        if (self.key is None) != (self.cert is None):
            raise ConfigError("signing.key and signing.cert go together: give both or neither")
        if self.passphrase_env is not None and not self.passphrase_env.isidentifier():
            raise ConfigError(
                f"signing.passphrase_env: {self.passphrase_env!r} is not an environment "
                "variable name"
            )

    @property
    def signs(self) -> bool:
        """Whether instances are signed as they are spooled."""
        return self.key is not None and self.sign_on_ingest is not False


@dataclass(frozen=True)
class Destination:
    """The PACS that checked series are forwarded to."""

    ae_title: str
    host: str
    port: int
    tls: TlsConfig | None = None


def _default_policy() -> dict[str, tuple[str, ...]]:
    return {
        "authentic": ("forward", "attach"),
        "manipulated": ("quarantine", "alert"),
        "inconclusive": ("quarantine", "alert"),
        "error": ("quarantine", "alert"),
        "passthrough": ("forward",),
    }


@dataclass(frozen=True)
class Policy:
    """Actions per outcome, and which result objects ``attach`` sends.

    ``forward`` sends the series to the destination; ``attach`` adds our SR / SC / PDF (only
    together with ``forward``); ``quarantine`` moves the series into the quarantine folder (after
    forwarding, when both are asked for); ``alert`` logs and posts to the webhook.
    """

    actions: Mapping[str, tuple[str, ...]] = field(default_factory=_default_policy)
    attach: tuple[str, ...] = ("sr", "sc", "pdf")

    def actions_for(self, outcome: str) -> tuple[str, ...]:
        return tuple(self.actions.get(outcome, ("quarantine", "alert")))


@dataclass(frozen=True)
class GatewayConfig:
    """Everything ``medforensics gateway run`` can be told.

    Attributes:
        spool_dir: received instances, results, quarantine and the index database.
        ae_title: this SCP's AE title; associations calling another title are rejected.
        host: interface to listen on (loopback unless told otherwise).
        port: TCP port (0 picks a free one, for tests).
        allowed_calling_aes: calling AE titles accepted; empty accepts any.
        max_pdu: largest P-DATA PDU this side accepts (bytes); larger ones abort the association.
        tls: serve DICOM over TLS.
        quiet_seconds: a series is complete once no instance arrived for this long.
        detector: registry name of the detector (see ``medforensics env``).
        analysis_workers: series analysed at the same time (threads).
        destination: where series are forwarded; ``forward`` fails (and retries) without one.
        policy: what each outcome does.
        webhook_url: alerts are POSTed here as JSON; None logs them only.
        webhook_timeout_s: longest an alert POST may take.
        db_url: index database; None means SQLite in the spool folder.
        keep_forwarded: keep forwarded instances under ``spool_dir/sent`` instead of deleting.
        min_free_bytes: below this much free disk, instances are refused (0xA700).
        network_timeout_s: DIMSE/network timeout of both the SCP and the forwarding SCU.
        retry_max_s: longest wait between two forwarding attempts (backoff doubles up to it).
        accept_unknown_sop_classes: accept storage of SOP classes pynetdicom does not know.
        write_reports: write reports (JSON, PDF, DICOM SR / SC / PDF) for every analysed series;
            ``attach`` can forward only what was written.
        signing: sign on ingest and verify on the way out; None: neither.
    """

    spool_dir: Path
    ae_title: str = "MEDFORENSICS"
    host: str = "127.0.0.1"
    port: int = 11112
    allowed_calling_aes: tuple[str, ...] = ()
    max_pdu: int = DEFAULT_MAX_PDU
    tls: TlsConfig | None = None
    quiet_seconds: float = 10.0
    detector: str = "auto"
    analysis_workers: int = 1
    destination: Destination | None = None
    policy: Policy = field(default_factory=Policy)
    webhook_url: str | None = None
    webhook_timeout_s: float = 5.0
    db_url: str | None = None
    keep_forwarded: bool = False
    min_free_bytes: int = 256 * 1024 * 1024
    network_timeout_s: float = 30.0
    retry_max_s: float = 60.0
    accept_unknown_sop_classes: bool = False
    write_reports: bool = True
    signing: SigningConfig | None = None

    def __post_init__(self) -> None:
        _check_ae(self.ae_title, "gateway.ae_title")
        for title in self.allowed_calling_aes:
            _check_ae(title, "gateway.allowed_calling_aes")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"gateway.port: {self.port} is not a TCP port (0-65535)")
        if self.max_pdu < 4096:
            raise ConfigError(f"gateway.max_pdu: {self.max_pdu} is too small (at least 4096)")
        if self.quiet_seconds < 0 or self.analysis_workers < 1:
            raise ConfigError("gateway.quiet_seconds must be >= 0 and analysis_workers >= 1")
        if self.webhook_timeout_s <= 0 or self.network_timeout_s <= 0:
            raise ConfigError("alerts.timeout_s and gateway.network_timeout_s must be > 0")
        if self.destination is not None:
            _check_ae(self.destination.ae_title, "destination.ae_title")
        for outcome, actions in self.policy.actions.items():
            if outcome not in OUTCOMES:
                raise ConfigError(f"policy.{outcome}: unknown outcome; use {', '.join(OUTCOMES)}")
            unknown = [a for a in actions if a not in ACTIONS]
            if unknown:
                raise ConfigError(
                    f"policy.{outcome}: unknown action(s) {unknown}; use {', '.join(ACTIONS)}"
                )
            if not {"forward", "quarantine"} & set(actions):
                raise ConfigError(
                    f"policy.{outcome}: needs 'forward' or 'quarantine', or the series would "
                    "stay in the spool for ever"
                )
        bad = [kind for kind in self.policy.attach if kind not in ATTACHABLE]
        if bad:
            raise ConfigError(f"policy.attach: unknown result object(s) {bad}; use {ATTACHABLE}")

    @property
    def index_url(self) -> str:
        """The index database URL (SQLite inside the spool unless ``db_url`` says otherwise)."""
        return self.db_url or f"sqlite:///{self.spool_dir / 'gateway.db'}"


def _check_ae(title: str, key: str) -> None:
    if (
        not title
        or len(title) > 16
        or not title.isascii()
        or "\\" in title
        or title != title.strip()
    ):
        raise ConfigError(
            f"{key}: {title!r} is not a valid AE title (1-16 ASCII characters, no backslash, "
            "no leading or trailing spaces)"
        )


_SECTIONS = ("gateway", "destination", "policy", "alerts", "tls", "signing")
#: settings of GatewayConfig that live in tables of their own
_ELSEWHERE = ("destination", "policy", "tls", "webhook_url", "webhook_timeout_s", "signing")
_GATEWAY_KEYS = {f.name for f in fields(GatewayConfig) if f.name not in _ELSEWHERE}
_SIGNING_KEYS = {f.name for f in fields(SigningConfig)}


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise ConfigError(f"{path}: is not valid {kind}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a table of settings")
    return data


def _table(data: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    return dict(value)


def _tls(values: Mapping[str, Any], where: str, base: Path) -> TlsConfig:
    unknown = set(values) - {"cert", "key", "ca"}
    if unknown or "cert" not in values or "key" not in values:
        raise ConfigError(f"{where}: [tls] needs 'cert' and 'key' (and optionally 'ca') only")
    ca = values.get("ca")
    return TlsConfig(
        cert=_path(values["cert"], base),
        key=_path(values["key"], base),
        ca=_path(ca, base) if ca else None,
    )


def _signing(values: Mapping[str, Any], base: Path) -> SigningConfig:
    unknown = set(values) - _SIGNING_KEYS
    if unknown:
        raise ConfigError(
            f"unknown key(s) in [signing]: {sorted(unknown)}; use {sorted(_SIGNING_KEYS)}"
        )
    kwargs: dict[str, Any] = {}
    for name in ("key", "cert", "trust"):
        if values.get(name):
            kwargs[name] = _path(values[name], base)
    crls = values.get("crls", [])
    if isinstance(crls, str):
        crls = [crls]
    if not isinstance(crls, list):
        raise ConfigError("signing.crls must be a list of files")
    kwargs["crls"] = tuple(_path(crl, base) for crl in crls)
    for name in ("sign_on_ingest", "verify_before_forward"):
        if name in values:
            if not isinstance(values[name], bool):
                raise ConfigError(f"signing.{name} must be true or false")
            kwargs[name] = values[name]
    if values.get("passphrase_env"):
        kwargs["passphrase_env"] = str(values["passphrase_env"])
    if "profile" in values:
        kwargs["profile"] = str(values["profile"])
    return SigningConfig(**kwargs)


def _path(value: Any, base: Path) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path


def config_from_mapping(
    data: Mapping[str, Any], where: str = "configuration", base: Path | None = None
) -> GatewayConfig:
    """Build a config from parsed TOML/JSON; relative paths are taken from ``base``."""
    base = base or Path.cwd()
    unknown = set(data) - set(_SECTIONS)
    if unknown:
        raise ConfigError(f"{where}: unknown table(s) {sorted(unknown)}; use {_SECTIONS}")
    gateway = _table(data, "gateway", where)
    bad = set(gateway) - _GATEWAY_KEYS
    if bad:
        raise ConfigError(f"{where}: unknown key(s) in [gateway]: {sorted(bad)}")
    if "spool_dir" not in gateway:
        raise ConfigError(f"{where}: [gateway] spool_dir is required")
    kwargs: dict[str, Any] = dict(gateway)
    kwargs["spool_dir"] = _path(gateway["spool_dir"], base)
    if "allowed_calling_aes" in kwargs:
        kwargs["allowed_calling_aes"] = tuple(kwargs["allowed_calling_aes"])
    destination = _table(data, "destination", where)
    if destination:
        bad = set(destination) - {"ae_title", "host", "port", "tls"}
        if bad or not {"ae_title", "host", "port"} <= set(destination):
            raise ConfigError(f"{where}: [destination] needs ae_title, host and port (and tls)")
        tls = destination.get("tls")
        kwargs["destination"] = Destination(
            ae_title=str(destination["ae_title"]),
            host=str(destination["host"]),
            port=int(destination["port"]),
            tls=_tls(tls, where, base) if tls else None,
        )
    policy = _table(data, "policy", where)
    if policy:
        attach = tuple(policy.pop("attach", Policy().attach))
        actions = _default_policy()
        for outcome, listed in policy.items():
            if not isinstance(listed, list):
                raise ConfigError(f"{where}: policy.{outcome} must be a list of actions")
            actions[outcome] = tuple(str(a) for a in listed)
        kwargs["policy"] = Policy(actions=actions, attach=attach)
    alerts = _table(data, "alerts", where)
    bad = set(alerts) - {"webhook_url", "timeout_s"}
    if bad:
        raise ConfigError(f"{where}: unknown key(s) in [alerts]: {sorted(bad)}")
    if alerts.get("webhook_url"):
        kwargs["webhook_url"] = str(alerts["webhook_url"])
    if "timeout_s" in alerts:
        kwargs["webhook_timeout_s"] = float(alerts["timeout_s"])
    tls_values = _table(data, "tls", where)
    if tls_values:
        kwargs["tls"] = _tls(tls_values, where, base)
    signing = _table(data, "signing", where)
    if signing:
        try:
            kwargs["signing"] = _signing(signing, base)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    try:
        return GatewayConfig(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def load_config(path: str | Path, **overrides: Any) -> GatewayConfig:
    """Read a TOML (``.toml``) or JSON (``.json``) file; ``overrides`` (not None) win."""
    file = Path(path).expanduser()
    config = config_from_mapping(_read(file), str(file), base=file.parent)
    changes = {key: value for key, value in overrides.items() if value is not None}
    try:
        return replace(config, **changes) if changes else config
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from exc


def override_signing(config: GatewayConfig, **changes: Any) -> GatewayConfig:
    """``config`` with some ``[signing]`` settings replaced (None values are left alone)."""
    values = {key: value for key, value in changes.items() if value is not None}
    if not values:
        return config
    unknown = set(values) - _SIGNING_KEYS
    if unknown:
        raise ConfigError(f"unknown [signing] setting(s) {sorted(unknown)}")
    if "crls" in values:
        values["crls"] = tuple(Path(p) for p in values["crls"])
    return replace(config, signing=replace(config.signing or SigningConfig(), **values))
