"""``medforensics serve`` (the REST API) and ``medforensics apikey create|list|revoke``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from medforensics.cli.output import stderr, stdout

if TYPE_CHECKING:
    from medforensics.service.auth import KeyStore
    from medforensics.service.config import ServiceSettings

_RATE = re.compile(r"^\s*(\d+)\s*(?:/\s*(?:min|m|minute))?\s*$")


def _settings(data_dir: Path | None, db_url: str | None) -> ServiceSettings:
    from medforensics.service.config import ServiceSettings, SettingsError

    try:
        return ServiceSettings.from_env().with_overrides(data_dir=data_dir, db_url=db_url)
    except SettingsError as exc:
        stderr.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc


def serve_command(
    host: str | None = typer.Option(
        None, help="Interface to listen on [default: 127.0.0.1, env MEDFORENSICS_HOST]."
    ),
    port: int | None = typer.Option(None, help="TCP port [default: 8000, env MEDFORENSICS_PORT]."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Database, uploads and artefacts [env MEDFORENSICS_DATA]."
    ),
    db_url: str | None = typer.Option(
        None,
        "--db-url",
        help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db [default: SQLite in the "
        "data dir; env MEDFORENSICS_DB_URL].",
    ),
    detector: str | None = typer.Option(
        None, help="Detector the workers load [default: auto; env MEDFORENSICS_DETECTOR]."
    ),
    workers: int | None = typer.Option(
        None, help="Analysis worker processes [default: 2; env MEDFORENSICS_WORKERS]."
    ),
    queue_limit: int | None = typer.Option(
        None, help="Queued analyses before 429 [default: 100; env MEDFORENSICS_QUEUE_LIMIT]."
    ),
    upload_limit_mb: float | None = typer.Option(
        None, "--upload-limit-mb", help="Largest upload in MiB [default: 512]."
    ),
    job_timeout: float | None = typer.Option(
        None, "--job-timeout", help="Seconds an analysis may run [default: 600]."
    ),
    retention_days: float | None = typer.Option(
        None, help="Days inputs and artefacts are kept; 0 keeps them [default: 30]."
    ),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
) -> None:
    """Run the REST API (FastAPI + uvicorn) with its worker pool.

    Every option also reads an environment variable MEDFORENSICS_<OPTION>; see docs/service.md.
    """
    from medforensics.service.config import ServiceSettings, SettingsError
    from medforensics.utils.optional import MissingExtraError, require

    try:
        uvicorn = require("uvicorn", "the REST API")
        require("fastapi", "the REST API")
    except MissingExtraError as exc:
        stderr.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    try:
        settings = ServiceSettings.from_env().with_overrides(
            host=host,
            port=port,
            data_dir=data_dir,
            db_url=db_url,
            detector=detector,
            workers=workers,
            queue_limit=queue_limit,
            upload_limit_bytes=int(upload_limit_mb * 2**20) if upload_limit_mb else None,
            job_timeout_s=job_timeout,
            retention_days=retention_days,
        )
    except SettingsError as exc:
        stderr.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    from medforensics.detect import create_detector
    from medforensics.service.app import create_app
    from medforensics.service.logs import configure_logging, uvicorn_log_config
    from medforensics.service.worker import load_plugins

    try:
        load_plugins(settings.plugins)
        create_detector(settings.detector)  # cheap: weights load on first use, in the workers
    except Exception as exc:  # unknown name, missing weights, a plugin that fails to import
        stderr.print(f"[red]error:[/] cannot use detector {settings.detector!r}: {exc}")
        raise typer.Exit(2) from exc
    configure_logging(log_level)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=uvicorn_log_config(log_level),
        access_log=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=20,
    )


apikey_app = typer.Typer(
    help="Create, list and revoke API keys of the REST API.", no_args_is_help=True
)


def _parse_rate(rate: str | None) -> int | None:
    if rate is None:
        return None
    match = _RATE.match(rate)
    if not match or int(match.group(1)) <= 0:
        stderr.print(f"[red]error:[/] --rate {rate!r} is not a rate: write e.g. 60/min or 60")
        raise typer.Exit(2)
    return int(match.group(1))


def _key_store(data_dir: Path | None, db_url: str | None) -> KeyStore:
    from medforensics.db import make_engine
    from medforensics.service.auth import KeyStore

    settings = _settings(data_dir, db_url)
    return KeyStore(make_engine(settings.database_url))


@apikey_app.command("create")
def apikey_create(
    tenant: str = typer.Option(..., help="Tenant the key belongs to (it sees only its analyses)."),
    rate: str | None = typer.Option(
        None, help="Requests per minute, e.g. 60/min [default: the server's, 120/min]."
    ),
    read_only: bool = typer.Option(False, "--read-only", help="May read, may not submit."),
    label: str = typer.Option("", help="A note for 'apikey list' (who holds the key)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="As for 'serve'."),
    db_url: str | None = typer.Option(None, "--db-url", help="As for 'serve'."),
    as_json: bool = typer.Option(False, "--json", help="Print the key as JSON."),
) -> None:
    """Create a key; it is printed once and only its hash is stored."""
    keys = _key_store(data_dir, db_url)
    try:
        created = keys.create(
            tenant,
            rate_per_min=_parse_rate(rate),
            scopes=("read",) if read_only else ("read", "write"),
            label=label,
        )
    except ValueError as exc:
        stderr.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    if as_json:
        stdout.print_json(
            json.dumps(
                {
                    "key_id": created.key_id,
                    "tenant": created.tenant,
                    "key": created.token,
                    "scopes": list(created.scopes),
                    "rate_per_min": created.rate_per_min,
                }
            )
        )
        return
    stdout.print(created.token, soft_wrap=True, highlight=False)
    stderr.print(
        f"key id {created.key_id} for tenant {created.tenant} "
        f"({' '.join(created.scopes)}); store the key now, it is not shown again"
    )


@apikey_app.command("list")
def apikey_list(
    tenant: str | None = typer.Option(None, help="Only this tenant's keys."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="As for 'serve'."),
    db_url: str | None = typer.Option(None, "--db-url", help="As for 'serve'."),
) -> None:
    """List keys (ids, tenants, scopes, rates, state; never the secrets)."""
    keys = _key_store(data_dir, db_url)
    for key in keys.list(tenant):
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        rate = f"{key.rate_per_min}/min" if key.rate_per_min else "default rate"
        stdout.print(
            f"{key.id}  {key.tenant}  {key.scopes}  {rate}  {state}  {key.label}",
            highlight=False,
        )


@apikey_app.command("revoke")
def apikey_revoke(
    key_id: str = typer.Argument(..., help="The key id shown by 'apikey list'."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="As for 'serve'."),
    db_url: str | None = typer.Option(None, "--db-url", help="As for 'serve'."),
) -> None:
    """Revoke a key: requests with it get 403 (within 5 s on a running server)."""
    keys = _key_store(data_dir, db_url)
    if not keys.revoke(key_id):
        stderr.print(f"[red]error:[/] no active key with id {key_id!r}")
        raise typer.Exit(1)
    stderr.print(f"key {key_id} revoked")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
    app.add_typer(apikey_app, name="apikey")
