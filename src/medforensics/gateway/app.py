"""The running gateway: SCP, spool, scheduler, analysis pool and dispatch pool wired together.

Threads:

* the SCP's association threads only validate and spool (``scp.handle_store``);
* one scheduler thread closes quiet batches and hands out work;
* ``analysis_workers`` threads analyse complete batches (one detector each, reused);
* one dispatch thread quarantines, alerts and forwards, in batch order.

With ``[signing]``, the SCP threads also sign each instance before acknowledging it, and the
dispatch thread verifies each one before it leaves the spool (``signing``).

State lives in the spool, not in these threads: stopping (or SIGKILL) at any moment loses no
acknowledged instance, and ``start`` resumes every unfinished batch where it stopped.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from medforensics.detect.base import Detector
from medforensics.gateway import tables as t
from medforensics.gateway.alerts import Alerter
from medforensics.gateway.config import GatewayConfig
from medforensics.gateway.dispatch import Dispatcher
from medforensics.gateway.forward import Forwarder
from medforensics.gateway.scp import StorageSCP
from medforensics.gateway.signing import GatewaySigning, with_signature_options
from medforensics.gateway.spool import Spool
from medforensics.gateway.worker import analyse_folder

if TYPE_CHECKING:
    from medforensics.provenance.audit import AuditHook, AuditLog

LOGGER = logging.getLogger("medforensics.gateway")
#: seconds between scheduler passes over the index (quiet batches are checked more often)
INDEX_POLL_S = 1.0
#: seconds before an analysis that failed for an internal reason is tried again
ANALYSIS_RETRY_S = 30.0


@dataclass
class Counters:
    """Since this process started (``gateway status`` reads the index for the totals)."""

    received: int = 0
    analysed: int = 0
    dispatched: int = 0


class Gateway:
    """Start with ``start()``, stop with ``stop()``; ``run_forever`` adds signal handling."""

    def __init__(
        self, config: GatewayConfig, *, detector_factory: Callable[[], Detector] | None = None
    ) -> None:
        self.config = config
        self.counters = Counters()
        self._detector_factory = detector_factory or self._create_detector
        self._detectors: queue.SimpleQueue[Detector] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._analysing: set[int] = set()
        self._dispatching: set[int] = set()
        self._retry_analysis: dict[int, float] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._scheduler: threading.Thread | None = None
        self._analysis_pool: ThreadPoolExecutor | None = None
        self._dispatch_pool: ThreadPoolExecutor | None = None
        self.spool: Spool | None = None
        self._dispatcher: Dispatcher | None = None
        self.scp: StorageSCP | None = None
        self.address: tuple[str, int] | None = None
        self.signing: GatewaySigning | None = None
        self._audit_log: AuditLog | None = None

    def _create_detector(self) -> Detector:
        from medforensics.detect import create_detector

        return create_detector(self.config.detector)

    def _new_detector(self) -> Detector:
        detector = self._detector_factory()
        if self.config.signing is not None:
            detector = with_signature_options(detector, self.config.signing)
        return detector

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> tuple[str, int]:
        """Recover the spool, start the workers, then listen; returns ``(host, port)``."""
        config = self.config
        # fail now, not on the first instance, when a key cannot be loaded (ConfigError)
        if config.signing is not None:
            self.signing = GatewaySigning.load(config.signing)
            LOGGER.info(
                "signing: %s; %s",
                f"signing on ingest as {self.signing.ingest.signer.name!r} "
                f"({config.signing.profile} profile)"
                if self.signing.ingest
                else "not signing",
                "verifying before forwarding" if self.signing.verifies else "not verifying",
            )
        # fail now, not on the first series, when the detector name is wrong
        self._detectors.put(self._new_detector())
        spool = self.spool = Spool.at(
            config.spool_dir, config.db_url, min_free_bytes=config.min_free_bytes
        )
        recovery = spool.recover()
        LOGGER.info(
            "spool %s recovered: %d open, %d to analyse, %d to dispatch, %d files re-indexed, "
            "%d unacknowledged dropped",
            config.spool_dir,
            len(recovery.reopened),
            len(recovery.to_analyse),
            len(recovery.to_dispatch),
            recovery.indexed_orphans,
            recovery.dropped_unacknowledged,
        )
        forwarder = None
        if config.destination is not None:
            forwarder = Forwarder(
                config.destination,
                calling_ae=config.ae_title,
                max_pdu=config.max_pdu,
                timeout_s=config.network_timeout_s,
            )
        self._dispatcher = Dispatcher(
            config,
            spool,
            forwarder,
            Alerter(config.webhook_url, config.webhook_timeout_s),
            self.signing,
        )
        self._analysis_pool = ThreadPoolExecutor(
            config.analysis_workers, thread_name_prefix="gateway-analysis"
        )
        self._dispatch_pool = ThreadPoolExecutor(1, thread_name_prefix="gateway-dispatch")
        for batch_id in recovery.to_analyse:
            self._submit_analysis(batch_id)
        for batch_id in recovery.to_dispatch:
            self._submit_dispatch(batch_id)
        self._stop.clear()
        self._scheduler = threading.Thread(
            target=self._schedule, name="gateway-scheduler", daemon=True
        )
        self._scheduler.start()
        self.scp = StorageSCP(
            config,
            spool,
            on_stored=self._on_stored,
            signer=self.signing.ingest if self.signing is not None else None,
        )
        self.address = self.scp.start()
        return self.address

    def stop(self) -> None:
        """Stop listening, let running analyses and dispatches finish; the rest waits in the
        spool for the next start."""
        if self.scp is not None:
            self.scp.stop()
        self._stop.set()
        self._wake.set()
        if self._scheduler is not None:
            self._scheduler.join(timeout=10)
        for pool in (self._analysis_pool, self._dispatch_pool):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if self.spool is not None:
            self.spool.engine.dispose()

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly."""
        stopping = threading.Event()

        def _request_stop(signum: int, _frame: Any) -> None:
            LOGGER.info("signal %d: stopping", signum)
            stopping.set()

        previous = {
            sig: signal.signal(sig, _request_stop) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self.start()
            while not stopping.wait(1.0):
                pass
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # -- work --------------------------------------------------------------------------------

    def _on_stored(self) -> None:
        with self._lock:
            self.counters.received += 1

    def _schedule(self) -> None:
        tick = max(0.05, min(0.25, self.config.quiet_seconds / 4))
        last_poll = 0.0
        while not self._stop.is_set():
            self._wake.wait(tick)
            self._wake.clear()
            if self._stop.is_set():
                return
            assert self.spool is not None
            try:
                for batch_id in self.spool.close_quiet_batches(self.config.quiet_seconds):
                    self._submit_analysis(batch_id)
                now = time.time()
                if now - last_poll >= INDEX_POLL_S:
                    last_poll = now
                    for batch_id in self.spool.batch_ids(t.ANALYSED, due_by=now):
                        self._submit_dispatch(batch_id)
                    for batch_id in self.spool.batch_ids(t.COMPLETE):
                        if self._retry_analysis.get(batch_id, 0.0) <= now:
                            self._submit_analysis(batch_id)
            except Exception:  # the scheduler must outlive a database hiccup
                LOGGER.exception("scheduler pass failed; trying again")

    def _submit_analysis(self, batch_id: int) -> None:
        with self._lock:
            if batch_id in self._analysing or self._analysis_pool is None or self._stop.is_set():
                return
            self._analysing.add(batch_id)
        future = self._analysis_pool.submit(self._analyse, batch_id)
        future.add_done_callback(
            partial(self._finished, batch_id=batch_id, running=self._analysing)
        )

    def _submit_dispatch(self, batch_id: int) -> None:
        with self._lock:
            if batch_id in self._dispatching or self._dispatch_pool is None or self._stop.is_set():
                return
            self._dispatching.add(batch_id)
        future = self._dispatch_pool.submit(self._dispatch, batch_id)
        future.add_done_callback(
            partial(self._finished, batch_id=batch_id, running=self._dispatching)
        )

    def _finished(self, future: Future[Any], batch_id: int, running: set[int]) -> None:
        with self._lock:
            running.discard(batch_id)
        if not future.cancelled() and future.exception() is not None:
            LOGGER.error("batch %s: %s", batch_id, future.exception())

    def _audit_hook(self, spool: Spool, detector: Detector) -> AuditHook:
        """Every analysis goes into the hash-chained audit log in the gateway's database."""
        from medforensics.provenance.audit import AuditHook, AuditLog

        if self._audit_log is None:  # two threads racing here make two handles on one log: fine
            self._audit_log = AuditLog(spool.engine)
        return AuditHook(self._audit_log, f"gateway:{self.config.ae_title}", detector.describe())

    def _analyse(self, batch_id: int) -> None:
        assert self.spool is not None
        spool = self.spool
        batch = spool.batch(batch_id)
        if batch.state != t.COMPLETE:
            return
        try:
            detector = self._detectors.get_nowait()
        except queue.Empty:
            detector = self._new_detector()
        try:
            analysis = analyse_folder(
                spool.batch_dir(batch),
                detector,
                spool.results_dir(batch_id),
                write_reports=self.config.write_reports,
                attach=self.config.policy.attach,
                audit=self._audit_hook(spool, detector),
            )
            actions = self.config.policy.actions_for(analysis.outcome)
            results = analysis.results
            if analysis.notes:
                results = [*results, {"notes": analysis.notes}]
            spool.record_analysis(
                batch_id,
                outcome=analysis.outcome,
                score=analysis.score,
                actions=actions,
                results=results,
                result_objects=analysis.result_objects,
            )
        except Exception as exc:
            # the disk, the index or a report writer failed, not the input: keep it and retry
            message = f"analysis of batch {batch_id} failed ({type(exc).__name__}: {exc})"
            LOGGER.exception(message)
            spool.log_event("error", message, batch_id)
            self._retry_analysis[batch_id] = time.time() + ANALYSIS_RETRY_S
            return
        finally:
            self._detectors.put(detector)
        self._retry_analysis.pop(batch_id, None)
        with self._lock:
            self.counters.analysed += 1
        LOGGER.info(
            "batch %s (%s): %s (score %s) -> %s",
            batch_id,
            batch.series_uid,
            analysis.outcome,
            analysis.score,
            ",".join(actions),
        )
        self._submit_dispatch(batch_id)

    def _dispatch(self, batch_id: int) -> None:
        assert self._dispatcher is not None
        if self._dispatcher.dispatch(batch_id):
            with self._lock:
                self.counters.dispatched += 1

    # -- for tests and benchmarks ------------------------------------------------------------

    def wait_idle(self, timeout: float = 60.0, poll: float = 0.1) -> bool:
        """Wait until nothing is open, analysing or waiting to be dispatched."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_idle():
                return True
            time.sleep(poll)
        return False

    def is_idle(self) -> bool:
        if self.spool is None:
            return True
        if self.spool.open_batches:
            return False
        with self._lock:
            if self._analysing or self._dispatching:
                return False
        return not any(
            self.spool.batch_ids(state) for state in (t.RECEIVING, t.COMPLETE, t.ANALYSED)
        )
