"""Service settings: one frozen dataclass, filled from defaults, the environment and the CLI.

Every setting has an environment variable ``MEDFORENSICS_<NAME>`` (upper case), e.g.
``MEDFORENSICS_WORKERS=4``; the data directory and database URL reuse ``medforensics.db``'s
``MEDFORENSICS_DATA`` and ``MEDFORENSICS_DB_URL``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from medforensics.db import DATA_ENV, URL_ENV, data_dir, default_url

WorkerMode = Literal["process", "thread"]

_ENV_PREFIX = "MEDFORENSICS_"
#: settings whose environment variable is not MEDFORENSICS_<NAME>
_ENV_NAMES = {"data_dir": DATA_ENV, "db_url": URL_ENV}


class SettingsError(ValueError):
    """A setting has a value the service cannot use; the message names it."""


@dataclass(frozen=True)
class ServiceSettings:
    """Everything ``medforensics serve`` can be told.

    Attributes:
        data_dir: database (SQLite), uploaded inputs, artefacts and spool live here.
        db_url: SQLAlchemy URL; empty means SQLite in ``data_dir``. PostgreSQL:
            ``postgresql+psycopg://user:password@host/db``.
        host: interface to listen on; loopback unless told otherwise.
        port: TCP port.
        detector: registry name of the detector every worker loads once.
        workers: analysis workers (processes or threads); 0 accepts jobs but runs none.
        worker_mode: ``process`` (killable on timeout, the default) or ``thread`` (tests).
        queue_limit: queued analyses at which new submissions get 429.
        size_priority_s_per_mib: queue order is submission time plus this many seconds per
            MiB uploaded: small inputs overtake large ones submitted shortly before them,
            never those submitted long before (0: first in, first out).
        upload_limit_bytes: largest request body accepted (413 above it).
        max_files: most files in one submission.
        zip_max_members: most entries in an uploaded zip.
        zip_max_total_bytes: most uncompressed bytes an uploaded zip may declare.
        zip_max_ratio: highest uncompressed/compressed ratio of an uploaded zip (zip bombs).
        job_timeout_s: an analysis running longer fails with a clear error.
        max_attempts: times a job is started (restarts, worker crashes) before it fails.
        wait_timeout_s: longest ``?wait=true`` may hold a request before answering 202.
        wait_max_bytes: uploads larger than this are never answered synchronously.
        upload_idle_timeout_s: a client sending no body bytes for this long gets 408.
        default_rate_per_min: requests per minute for keys created without ``--rate``.
        retention_days: inputs and artefacts of analyses finished longer ago are purged
            (rows and hashes stay); 0 keeps them forever.
        reports: write PDF/overlay/DICOM reports for each analysis.
        log_phi: allow file names and patient identifiers in logs (off by default).
        plugins: extra modules imported at start-up (each may register detectors).
    """

    data_dir: Path = field(default_factory=data_dir)
    db_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    detector: str = "auto"
    workers: int = 2
    worker_mode: WorkerMode = "process"
    queue_limit: int = 100
    size_priority_s_per_mib: float = 1.0
    upload_limit_bytes: int = 512 * 2**20
    max_files: int = 2000
    zip_max_members: int = 5000
    zip_max_total_bytes: int = 2 * 2**30
    zip_max_ratio: float = 100.0
    job_timeout_s: float = 600.0
    max_attempts: int = 3
    wait_timeout_s: float = 30.0
    wait_max_bytes: int = 32 * 2**20
    upload_idle_timeout_s: float = 60.0
    default_rate_per_min: int = 120
    retention_days: float = 30.0
    reports: bool = True
    log_phi: bool = False
    plugins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        positive = (
            "queue_limit",
            "upload_limit_bytes",
            "max_files",
            "zip_max_members",
            "zip_max_total_bytes",
            "zip_max_ratio",
            "job_timeout_s",
            "max_attempts",
            "wait_timeout_s",
            "upload_idle_timeout_s",
            "default_rate_per_min",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"setting {name} must be positive, got {getattr(self, name)}")
        for name in ("workers", "retention_days", "wait_max_bytes", "size_priority_s_per_mib"):
            if getattr(self, name) < 0:
                raise SettingsError(f"setting {name} must not be negative")
        if self.worker_mode not in ("process", "thread"):
            raise SettingsError(
                f"setting worker_mode must be 'process' or 'thread', not {self.worker_mode!r}"
            )
        if not 0 < self.port < 65536:
            raise SettingsError(f"setting port must be 1..65535, got {self.port}")

    @property
    def database_url(self) -> str:
        return self.db_url or default_url(self.data_dir)

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def artefacts_dir(self) -> Path:
        return self.data_dir / "artefacts"

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "work"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    def with_overrides(self, **overrides: Any) -> ServiceSettings:
        """A copy with the given settings changed (``None`` values are ignored)."""
        kept = {key: value for key, value in overrides.items() if value is not None}
        return replace(self, **kept)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        """Defaults overridden by ``MEDFORENSICS_<SETTING>`` environment variables."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            env_name = _ENV_NAMES.get(spec.name, _ENV_PREFIX + spec.name.upper())
            raw = environ.get(env_name)
            if raw is None or raw == "":
                continue
            values[spec.name] = _parse(spec.name, env_name, raw, spec.type)
        return cls(**values)


def _parse(name: str, env_name: str, raw: str, annotation: Any) -> Any:
    kind = str(annotation)
    try:
        if kind == "Path":
            return Path(raw).expanduser()
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return lowered in ("1", "true", "yes", "on")
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise SettingsError(
            f"environment variable {env_name}={raw!r} is not a valid {kind} for setting {name}"
        ) from exc
    return raw
