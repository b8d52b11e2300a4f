"""``medforensics gateway run|status`` and ``medforensics pacs scan``."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import typer

from medforensics.cli.output import stderr, stdout, write_json_atomic

gateway_app = typer.Typer(
    help="DICOM gateway: check every series before it reaches the PACS.", no_args_is_help=True
)
pacs_app = typer.Typer(help="Scan studies already in a PACS (DICOMweb).", no_args_is_help=True)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        alert = getattr(record, "alert", None)
        if alert is not None:
            entry["alert"] = alert
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _setup_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonFormatter()
        if as_json
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pynetdicom logs every PDU at INFO
    logging.getLogger("pynetdicom").setLevel(max(logging.WARNING, root.level))


def parse_destination(text: str) -> Any:
    """``AE@host:port`` → Destination."""
    from medforensics.gateway.config import Destination

    ae_title, at, address = text.partition("@")
    host, colon, port = address.rpartition(":")
    if not at or not colon or not port.isdigit() or not host:
        raise typer.BadParameter(f"{text!r}: use AE@host:port, e.g. PACS@10.0.0.5:104")
    return Destination(ae_title=ae_title, host=host.strip("[]"), port=int(port))


def _load(
    config: Path | None,
    spool: Path | None,
    signing: dict[str, Any] | None = None,
    **overrides: Any,
) -> Any:
    from medforensics.gateway.config import (
        ConfigError,
        GatewayConfig,
        load_config,
        override_signing,
    )

    try:
        if config is not None:
            loaded = load_config(config, spool_dir=spool, **overrides)
        else:
            from medforensics.db import data_dir

            values = {k: v for k, v in overrides.items() if v is not None}
            loaded = GatewayConfig(spool_dir=spool or data_dir() / "gateway", **values)
        return override_signing(loaded, **(signing or {}))
    except ConfigError as exc:
        where = f"{config}: " if config is not None and not str(exc).startswith(str(config)) else ""
        stderr.print(f"[red]error:[/] {where}{exc}")
        raise typer.Exit(2) from exc


@gateway_app.command("run")
def run_command(
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML or JSON settings."),
    spool: Path | None = typer.Option(None, help="Spool folder (overrides the config file)."),
    ae_title: str | None = typer.Option(None, help="This SCP's AE title."),
    host: str | None = typer.Option(None, help="Interface to listen on."),
    port: int | None = typer.Option(None, help="TCP port to listen on."),
    destination: str | None = typer.Option(
        None, help="Forward to AE@host:port (overrides [destination])."
    ),
    detector: str | None = typer.Option(None, help="Detector (see 'medforensics env')."),
    quiet_seconds: float | None = typer.Option(
        None, help="A series is complete after this many seconds without a new instance."
    ),
    allow: list[str] | None = typer.Option(
        None, "--allow", help="Calling AE title allowed to send (repeat); default any."
    ),
    webhook: str | None = typer.Option(None, help="POST alerts as JSON to this URL."),
    workers: int | None = typer.Option(None, help="Series analysed at the same time."),
    sign_key: Path | None = typer.Option(None, help="Signing key (overrides signing.key)."),
    sign_cert: Path | None = typer.Option(None, help="Its certificate (signing.cert)."),
    passphrase_env: str | None = typer.Option(
        None, help="Environment variable holding the key's passphrase."
    ),
    sign_profile: str | None = typer.Option(None, help="Signature profile: base or creator."),
    sign: bool | None = typer.Option(
        None, "--sign/--no-sign", help="Sign every instance on ingest (default: with a key)."
    ),
    verify: bool | None = typer.Option(
        None, "--verify/--no-verify", help="Verify signatures before forwarding (default on)."
    ),
    trust: Path | None = typer.Option(None, help="CA bundle signers are checked against."),
    crl: list[Path] | None = typer.Option(None, "--crl", help="Revocation list (repeat)."),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
    log_json: bool = typer.Option(False, "--log-json", help="One JSON object per log line."),
) -> None:
    """Run the Storage SCP: spool, analyse, forward or quarantine, alert. Stops on SIGTERM."""
    _setup_logging(log_level, log_json)
    signing = {
        "key": sign_key,
        "cert": sign_cert,
        "passphrase_env": passphrase_env,
        "profile": sign_profile,
        "sign_on_ingest": sign,
        "verify_before_forward": verify,
        "trust": trust,
        "crls": crl or None,
    }
    cfg = _load(
        config,
        spool,
        signing,
        ae_title=ae_title,
        host=host,
        port=port,
        destination=parse_destination(destination) if destination else None,
        detector=detector,
        quiet_seconds=quiet_seconds,
        allowed_calling_aes=tuple(allow) if allow else None,
        webhook_url=webhook,
        analysis_workers=workers,
    )
    from medforensics.gateway.app import Gateway
    from medforensics.gateway.config import ConfigError
    from medforensics.utils.optional import MissingExtraError

    try:
        Gateway(cfg).run_forever()
    except ConfigError as exc:  # a key or certificate that cannot be used: found at start-up
        where = f"{config}: " if config is not None else ""
        stderr.print(f"[red]error:[/] {where}{exc}")
        raise typer.Exit(2) from exc
    except (MissingExtraError, KeyError, OSError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) else str(exc)
        stderr.print(f"[red]error:[/] {message}")
        raise typer.Exit(2) from exc


@gateway_app.command("status")
def status_command(
    config: Path | None = typer.Option(None, "--config", "-c", help="TOML or JSON settings."),
    spool: Path | None = typer.Option(None, help="Spool folder (overrides the config file)."),
    json_out: str | None = typer.Option(None, "--json", help="Write JSON here ('-' = stdout)."),
) -> None:
    """Show the spool: counts, series waiting, quarantine, last errors."""
    cfg = _load(config, spool)
    if not (cfg.spool_dir / "gateway.db").exists() and cfg.db_url is None:
        stderr.print(f"[red]error:[/] {cfg.spool_dir}: no gateway spool here (no gateway.db)")
        raise typer.Exit(2)
    from medforensics.gateway.spool import open_engine
    from medforensics.gateway.status import read_status

    engine = open_engine(cfg.index_url)
    try:
        status = read_status(engine, cfg.spool_dir)
    finally:
        engine.dispose()
    if json_out:
        write_json_atomic(status.to_dict(), json_out)
        if json_out == "-":
            return
    from medforensics.utils.text import human_size

    stdout.print(f"[bold]spool[/] {status.spool_dir} ({human_size(status.spool_bytes)})")
    stdout.print(
        f"received {status.received}  forwarded {status.forwarded}  "
        f"quarantined {status.quarantined}  rejected {status.rejected}  "
        f"results forwarded {status.results_forwarded}"
    )
    if status.signed or status.verified or status.broken or status.unsigned:
        stdout.print(
            f"signatures: signed {status.signed}  verified {status.verified}  "
            f"broken {status.broken}  (untrusted {status.untrusted}, unsigned {status.unsigned})"
        )
    pending = sum(status.pending_series.values())
    detail = ", ".join(f"{n} {state}" for state, n in sorted(status.pending_series.items()))
    stdout.print(
        f"series done {status.series_done}  pending {pending}"
        + (f" ({detail})" if detail else "")
        + f"  failed {status.failed_series}"
    )
    if status.outcomes:
        stdout.print(
            "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(status.outcomes.items()))
        )
    for series in status.pending:
        error = f" [red]{series.last_error}[/]" if series.last_error else ""
        stdout.print(
            f"  batch {series.batch} {series.series_instance_uid}: {series.state}, "
            f"{series.instances} instance(s), {series.outcome or 'not analysed'}{error}"
        )
    if status.quarantine:
        stdout.print("[bold]quarantine[/] (newest first)")
        for item in status.quarantine:
            stdout.print(
                f"  batch {item['batch']} {item['series_instance_uid']}: {item['outcome']} "
                f"(score {item['score']}) {item['path']}"
            )
    if status.last_errors:
        stdout.print("[bold]last errors[/]")
        for entry in status.last_errors:
            batch = f" batch {entry['batch']}" if entry["batch"] is not None else ""
            stdout.print(f"  {entry['time']}{batch}: {entry['message']}")


@pacs_app.command("scan")
def pacs_scan_command(
    dicomweb: str = typer.Option(
        ..., "--dicomweb", help="DICOMweb root, e.g. http://pacs/dicom-web"
    ),
    study: list[str] | None = typer.Option(None, "--study", help="StudyInstanceUID (repeat)."),
    since: str | None = typer.Option(None, help="Every study since this date (YYYY-MM-DD)."),
    auth: str | None = typer.Option(None, help="HTTP basic credentials user:password."),
    token: str | None = typer.Option(None, help="Bearer token."),
    detector: str = typer.Option("auto", help="Detector (see 'medforensics env')."),
    store: bool = typer.Option(True, "--store/--no-store", help="STOW the results back."),
    out: Path | None = typer.Option(None, help="Also keep reports in this folder."),
    limit: int | None = typer.Option(None, help="At most this many studies (with --since)."),
    json_out: str | None = typer.Option(None, "--json", help="Write JSON here ('-' = stdout)."),
) -> None:
    """Pull studies by QIDO/WADO-RS, scan them, store SR / SC / PDF back by STOW-RS.

    Exit 0: all authentic; 1: something flagged; 2: something could not be analysed.
    """
    from medforensics.cli.output import results_table
    from medforensics.detect import create_detector
    from medforensics.gateway.dicomweb import DicomwebError, find_studies, make_client, scan_study
    from medforensics.scan import exit_code

    try:
        active = create_detector(detector)
        client = make_client(dicomweb, auth=auth, token=token)
        studies = find_studies(client, studies=study or (), since=since, limit=limit)
    except (KeyError, ValueError, DicomwebError) as exc:
        stderr.print(f"[red]error:[/] {exc.args[0] if exc.args else exc}")
        raise typer.Exit(2) from exc
    scans = []
    try:
        for study_uid in studies:
            for scan in scan_study(client, study_uid, active, store=store, out_dir=out):
                scans.append(scan)
                if scan.skipped:
                    stderr.print(f"[dim]skipped series {scan.series_uid}: {scan.skipped}[/]")
                for note in scan.notes:
                    stderr.print(f"[yellow]note:[/] {scan.series_uid}: {note}")
    except DicomwebError as exc:
        stderr.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    results = [result for scan in scans for result in scan.results]
    summary = stderr if json_out == "-" else stdout
    summary.print(results_table(results))
    stored = sum(len(scan.stored) for scan in scans)
    summary.print(
        f"{len(studies)} study(ies), {len(results)} series analysed, "
        f"{stored} result object(s) stored"
    )
    if json_out:
        write_json_atomic({"studies": studies, "series": [s.to_dict() for s in scans]}, json_out)
    raise typer.Exit(exit_code(results))


def register(app: typer.Typer) -> None:
    app.add_typer(gateway_app, name="gateway")
    app.add_typer(pacs_app, name="pacs")
