"""What the running service holds: settings, database, stores, worker pool, metrics.

Built once per app; routers reach it through ``request.app.state.service`` (see ``deps``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, text

from medforensics.db import make_engine
from medforensics.service.auth import KeyStore, RateLimiter
from medforensics.service.config import ServiceSettings
from medforensics.service.jobs import JobStore
from medforensics.service.logs import describe_inputs, log_event, service_logger
from medforensics.service.metrics import ServiceMetrics
from medforensics.service.models import utcnow
from medforensics.service.storage import BlobStore
from medforensics.service.worker import Outcome, WorkerPool

#: a stored input younger than this is never purged: its analysis row may not be written yet
_BLOB_GRACE_SECONDS = 3600.0


class CompletionHub:
    """Lets ``?wait=true`` requests sleep until their job finishes (woken from worker threads)."""

    def __init__(self) -> None:
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = (
            defaultdict(list)
        )
        self._lock = threading.Lock()

    def register(self, job_id: str) -> asyncio.Event:
        event = asyncio.Event()
        with self._lock:
            self._waiters[job_id].append((asyncio.get_running_loop(), event))
        return event

    def unregister(self, job_id: str, event: asyncio.Event) -> None:
        with self._lock:
            waiters = [w for w in self._waiters.get(job_id, []) if w[1] is not event]
            if waiters:
                self._waiters[job_id] = waiters
            else:
                self._waiters.pop(job_id, None)

    def notify(self, job_id: str) -> None:
        with self._lock:
            waiters = self._waiters.pop(job_id, [])
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)


class ServiceState:
    """The service's long-lived objects and its start/stop."""

    def __init__(self, settings: ServiceSettings, engine: Engine | None = None) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = engine or make_engine(settings.database_url)
        self.store = JobStore(self.engine, max_attempts=settings.max_attempts)
        self.keys = KeyStore(self.engine, default_rate_per_min=settings.default_rate_per_min)
        self.limiter = RateLimiter()
        self.blobs = BlobStore(settings.blobs_dir, settings.spool_dir)
        self.metrics = ServiceMetrics()
        self.hub = CompletionHub()
        self.pool = WorkerPool(
            self.store,
            self.blobs,
            detector=settings.detector,
            workers=settings.workers,
            mode=settings.worker_mode,
            job_timeout_s=settings.job_timeout_s,
            data_dir=settings.data_dir,
            artefacts_dir=settings.artefacts_dir,
            work_dir=settings.work_dir,
            reports=settings.reports,
            log_phi=settings.log_phi,
            plugins=settings.plugins,
        )
        self.pool.listeners.append(self._on_outcome)
        self._audit: Any = None
        self._audit_missing: str | None = None
        self._models: list[dict[str, Any]] | None = None
        self._housekeeping = threading.Event()
        self._housekeeper: threading.Thread | None = None
        self._register_gauges()

    # -- start / stop ------------------------------------------------------------------------

    def start(self) -> None:
        log = service_logger()
        self.blobs.ensure_dirs()
        self.settings.artefacts_dir.mkdir(parents=True, exist_ok=True)
        self.blobs.clean_spool()
        recovery = self.store.recover()
        log_event(
            log,
            "service.start",
            detector=self.settings.detector,
            workers=self.settings.workers,
            mode=self.settings.worker_mode,
            database=self.engine.url.get_backend_name(),
            requeued=len(recovery.requeued),
            failed_on_restart=len(recovery.failed),
        )
        self.pool.start()
        self._housekeeping.clear()
        self._housekeeper = threading.Thread(
            target=self._housekeep, name="medforensics-retention", daemon=True
        )
        self._housekeeper.start()

    def stop(self) -> None:
        self._housekeeping.set()
        self.pool.stop()
        if self._housekeeper is not None:
            self._housekeeper.join(timeout=5)
        log_event(service_logger(), "service.stop")

    # -- outcomes ----------------------------------------------------------------------------

    def _on_outcome(self, outcome: Outcome) -> None:
        job = outcome.job
        verdict = (outcome.payload or {}).get("verdict") if outcome.status == "done" else None
        if outcome.status in ("done", "failed"):
            self.metrics.finished.inc(outcome.status, str(verdict or "none"))
            self.metrics.analysis_seconds.observe(outcome.seconds)
        level = logging.WARNING if outcome.status in ("failed", "lost") else logging.INFO
        log_event(
            service_logger(),
            f"analysis.{outcome.status}",
            level,
            id=job.id,
            attempt=job.attempt,
            tenant=job.tenant,
            key=job.key_id,
            seconds=round(outcome.seconds, 3),
            verdict=verdict,
            error=outcome.error if self.settings.log_phi or outcome.status != "done" else None,
        )
        if outcome.status == "done" and outcome.payload is not None:
            self._record_audit(outcome)
        self.hub.notify(job.id)

    def _record_audit(self, outcome: Outcome) -> None:
        """Append the analysis to the hash-chained audit log (when provenance is installed)."""
        if self._audit_missing is not None:
            return
        try:
            from medforensics.provenance.audit import AuditLog, record_scan_result
        except ImportError as exc:
            self._audit_missing = str(exc)
            log_event(
                service_logger(),
                "audit.unavailable",
                logging.WARNING,
                error=f"medforensics.provenance.audit cannot be imported ({exc}); "
                "analyses are not written to the audit log",
            )
            return
        if self._audit is None:
            self._audit = AuditLog(self.engine)
        job = outcome.job
        phi = self.settings.log_phi
        # file names may carry patient names: the audit log names inputs by position and hash
        hashes = {
            (item.name if phi else f"input-{position + 1}"): item.sha256
            for position, item in enumerate(job.inputs)
        }
        model = self.pool.model_description()
        assert outcome.payload is not None
        for entry in outcome.payload["report"].get("results", []):
            result = scan_result_from_dict(entry)
            if not phi:
                result.input, result.location = f"analysis {job.id}", None
            try:
                record_scan_result(
                    self._audit,
                    result,
                    actor=job.key_id,
                    model=model,
                    input_hashes=hashes,
                )
            except Exception:
                service_logger().exception("audit entry for analysis %s not written", job.id)

    # -- models --------------------------------------------------------------------------------

    def model_catalogue(self) -> list[dict[str, Any]]:
        """Every registered detector with its describe() (or why it cannot be used)."""
        if self._models is None:
            from medforensics.detect import create_detector, list_detectors
            from medforensics.service.worker import load_plugins

            load_plugins(self.settings.plugins)
            catalogue = []
            for name in list_detectors():
                info: dict[str, Any] = {"name": name, "active": name == self.settings.detector}
                try:
                    description = create_detector(name).describe()
                    info.update(available=True, description=_json_safe(description))
                except Exception as exc:
                    info.update(available=False, error=str(exc))
                catalogue.append(info)
            self._models = catalogue
        return self._models

    # -- metrics and housekeeping --------------------------------------------------------------

    def _register_gauges(self) -> None:
        self.metrics.add_gauge(
            "medforensics_analyses",
            "Analyses in the database by status.",
            lambda: {(status,): float(n) for status, n in self.store.counts_by_status().items()},
            ("status",),
        )
        self.metrics.add_gauge(
            "medforensics_analyses_done_by_verdict",
            "Finished analyses in the database by summary verdict.",
            lambda: {(v,): float(n) for v, n in self.store.counts_by_verdict().items()},
            ("verdict",),
        )
        self.metrics.add_gauge(
            "medforensics_queue_depth",
            "Analyses waiting for a worker.",
            lambda: {(): float(self.store.queued_count())},
        )
        self.metrics.add_gauge(
            "medforensics_workers",
            "Worker slots by state.",
            lambda: {
                ("configured",): float(self.settings.workers),
                ("alive",): float(self.pool.alive),
                ("ready",): float(self.pool.ready),
                ("busy",): float(self.pool.running),
            },
            ("state",),
        )

    def database_ok(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def retry_after_seconds(self) -> float:
        """When the full queue will probably have room: one job's mean time over the workers."""
        if self.settings.workers == 0:
            return 60.0
        mean = self.store.mean_run_seconds() or 5.0
        return min(300.0, max(1.0, mean / self.settings.workers))

    def _housekeep(self) -> None:
        while not self._housekeeping.is_set():
            try:
                purge_expired(self)
            except Exception:
                service_logger().exception("retention purge failed")
            self._housekeeping.wait(3600.0)

    def log_submission(
        self, analysis_id: str, key_id: str, names: list[str], hashes: list[str]
    ) -> None:
        log_event(
            service_logger(),
            "analysis.queued",
            id=analysis_id,
            key=key_id,
            inputs=describe_inputs(names, hashes, self.settings.log_phi),
        )


def purge_expired(state: ServiceState) -> dict[str, int]:
    """Delete inputs and artefacts of analyses finished more than ``retention_days`` ago.

    Rows stay (with their input hashes), marked ``purged_at``; an input still used by an
    analysis within the retention period is kept. Stored inputs that no analysis refers to
    are removed too (after an hour's grace), whatever the retention.
    """
    import shutil

    days = state.settings.retention_days
    expired = state.store.finished_before(utcnow() - timedelta(days=days)) if days > 0 else []
    for analysis_id in expired:
        shutil.rmtree(state.settings.artefacts_dir / analysis_id, ignore_errors=True)
    state.store.mark_purged(expired)
    # inputs no analysis refers to any more (expired, or refused after upload: queue full)
    in_use = state.store.hashes_in_use()
    removed = sum(
        1
        for digest in list(state.blobs.hashes())
        if digest not in in_use and state.blobs.delete(digest, older_than_s=_BLOB_GRACE_SECONDS)
    )
    if expired or removed:
        log_event(service_logger(), "retention.purge", analyses=len(expired), inputs=removed)
    return {"analyses": len(expired), "inputs": removed}


def scan_result_from_dict(entry: dict[str, Any]) -> Any:
    """A ``ScanResult`` rebuilt from its JSON (results cross a process boundary as dicts)."""
    from dataclasses import fields

    from medforensics.scan import ResultFinding, ScanResult

    known = {spec.name for spec in fields(ScanResult)}
    values = {key: value for key, value in entry.items() if key in known}
    finding_fields = {spec.name for spec in fields(ResultFinding)}
    values["findings"] = [
        ResultFinding(**{k: v for k, v in finding.items() if k in finding_fields})
        for finding in values.get("findings", [])
    ]
    return ScanResult(**values)


def _json_safe(value: object) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
