"""The worker pool: N slots, each with a worker (a process by default) that loads the detector once.

A slot is a supervisor thread in the server process. It claims a job from the database, hands
it to its worker over a pipe, waits at most ``job_timeout_s``, and records the outcome with the
store's conditional updates. A worker that exceeds the timeout is killed (the job fails with a
message saying so) and replaced; a worker that dies mid-job (a crash, the OOM killer) has its
job re-queued until ``max_attempts``. Workers never touch the database: if the server dies,
they see their pipe close and exit, and the jobs they held are re-queued at the next start.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from medforensics.service.jobs import ClaimedJob, JobStore
from medforensics.service.logs import describe_inputs, log_event, service_logger
from medforensics.service.runner import JobInput, JobSpec, run_job
from medforensics.service.storage import BlobStore, artefact_dir

_POLL_SECONDS = 0.25
_IDLE_WAIT_SECONDS = 1.0
_START_TIMEOUT_SECONDS = 300.0
_ERROR_BACKOFF_SECONDS = 5.0


@dataclass(frozen=True)
class Outcome:
    """What a slot reports after a job: ``status`` is done, failed, requeued or lost."""

    job: ClaimedJob
    status: str
    seconds: float
    payload: dict[str, Any] | None = None
    error: str | None = None


def load_plugins(modules: Sequence[str]) -> None:
    for name in modules:
        importlib.import_module(name)


def _json_safe(value: object) -> Any:
    return json.loads(json.dumps(value, default=str))


def _process_main(conn: Connection, detector_name: str, plugins: Sequence[str]) -> None:
    """Entry point of a worker process: load the detector, then run jobs until told to stop."""
    # Ctrl-C reaches the whole process group: the server decides when workers stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from medforensics.detect import create_detector

        load_plugins(plugins)
        detector = create_detector(detector_name)
        conn.send(("ready", _json_safe(detector.describe()), os.getpid()))
    except Exception as exc:
        conn.send(("fatal", f"cannot load detector {detector_name!r}: {exc}", os.getpid()))
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the server is gone; its jobs are re-queued when it starts again
        if message is None:
            return
        spec: JobSpec = message
        try:
            payload = run_job(detector, spec)
            reply: tuple[Any, ...] = ("done", spec.job_id, payload)
        except Exception as exc:
            reply = ("error", spec.job_id, _internal_error(exc))
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return


def _internal_error(exc: BaseException) -> str:
    logging.getLogger("medforensics.service.worker").debug(
        "job failed", exc_info=(type(exc), exc, exc.__traceback__)
    )
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" at {Path(where[0].filename).name}:{where[0].lineno}" if where else ""
    return (
        f"the analysis failed with an internal error ({type(exc).__name__}: {exc}{at}); "
        "please report it with the output of 'medforensics env'"
    )


class _ProcessWorker:
    """A worker process and the server's end of its pipe."""

    def __init__(self, detector: str, plugins: Sequence[str]) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_process_main,
            args=(child, detector, tuple(plugins)),
            name="medforensics-worker",
            daemon=True,
        )
        self.process.start()
        child.close()

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self.conn.close()

    def stop(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(timeout=timeout)
        self.kill()


class WorkerSlot(threading.Thread):
    """Supervises one worker: claims jobs, dispatches them, enforces the timeout."""

    def __init__(self, pool: WorkerPool, index: int) -> None:
        super().__init__(name=f"medforensics-slot-{index}", daemon=True)
        self.pool = pool
        self.index = index
        self.name_for_db = f"{pool.instance}-{index}"
        self.ready = False
        self.description: dict[str, Any] | None = None
        self.fatal: str | None = None
        self.current: ClaimedJob | None = None
        self._worker: _ProcessWorker | None = None
        self._detector: Any = None  # thread mode

    # -- life cycle --------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        if not self.is_alive():
            return False
        if self.pool.mode == "process":
            return self._worker is not None and self._worker.alive
        return True

    def run(self) -> None:
        try:
            while not self.pool.stopping.is_set():
                try:
                    self._step()
                except Exception:
                    # e.g. the database went away: say so, wait, and carry on; a job caught in
                    # the middle stays 'running' until the next start re-queues it
                    service_logger().exception("worker slot %s: error, retrying", self.index)
                    self.pool.stopping.wait(_ERROR_BACKOFF_SECONDS)
        finally:
            self.ready = False
            if self._worker is not None:
                self._worker.stop()

    def _step(self) -> None:
        if not self._ensure_worker():
            self.pool.stopping.wait(_ERROR_BACKOFF_SECONDS)
            return
        job = self.pool.store.claim(self.name_for_db)
        if job is None:
            self.pool.wakeup.wait(_IDLE_WAIT_SECONDS)
            self.pool.wakeup.clear()
            return
        self.current = job
        try:
            self._run(job)
        finally:
            self.current = None

    def _ensure_worker(self) -> bool:
        if self.pool.mode == "thread":
            if self._detector is None:
                try:
                    from medforensics.detect import create_detector

                    load_plugins(self.pool.plugins)
                    self._detector = create_detector(self.pool.detector)
                    self.description = _json_safe(self._detector.describe())
                except Exception as exc:
                    self.fatal = f"cannot load detector {self.pool.detector!r}: {exc}"
                    return False
                self.ready = True
            return True
        if self._worker is not None and self._worker.alive and self.ready:
            return True
        if self._worker is not None:
            self._worker.kill()
        self.ready = False
        self.fatal = None
        self._worker = _ProcessWorker(self.pool.detector, self.pool.plugins)
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not self.pool.stopping.is_set():
            if self._worker.conn.poll(_POLL_SECONDS):
                try:
                    kind, detail, _pid = self._worker.conn.recv()
                except (EOFError, OSError):
                    break
                if kind == "ready":
                    self.description = detail
                    self.fatal = None
                    self.ready = True
                    return True
                self.fatal = str(detail)
                break
            if not self._worker.alive:
                break
        if self.pool.stopping.is_set():
            self._worker.kill()
            self._worker = None
            return False
        if self.fatal is None:
            self.fatal = "the worker process exited while loading the detector"
        log_event(
            service_logger(), "worker.unavailable", logging.ERROR, slot=self.index, error=self.fatal
        )
        self._worker.kill()
        self._worker = None
        return False

    # -- one job ---------------------------------------------------------------------------------

    def _spec(self, job: ClaimedJob) -> JobSpec:
        settings = self.pool
        return JobSpec(
            job_id=job.id,
            attempt=job.attempt,
            inputs=tuple(
                JobInput(item.name, settings.blobs.path_for(item.sha256), item.format)
                for item in job.inputs
            ),
            modality=job.modality,
            work_dir=settings.work_dir / f"{job.id}-{job.attempt}",
            artefact_dir=artefact_dir(settings.artefacts_dir, job.id, job.attempt),
            data_dir=settings.data_dir,
            reports=settings.reports,
        )

    def _run(self, job: ClaimedJob) -> None:
        started = time.monotonic()
        log_event(
            service_logger(),
            "analysis.started",
            id=job.id,
            attempt=job.attempt,
            slot=self.index,
            inputs=describe_inputs(
                [i.name for i in job.inputs], [i.sha256 for i in job.inputs], self.pool.log_phi
            ),
        )
        missing = [i for i in job.inputs if not self.pool.blobs.exists(i.sha256)]
        if missing:
            self._finish(job, started, error="the uploaded input is no longer stored (purged?)")
            return
        spec = self._spec(job)
        if self.pool.mode == "thread":
            self._run_in_thread(job, spec, started)
        else:
            self._run_in_process(job, spec, started)

    def _run_in_process(self, job: ClaimedJob, spec: JobSpec, started: float) -> None:
        worker = self._worker
        assert worker is not None
        try:
            worker.conn.send(spec)
        except (OSError, ValueError):
            self._lost(job, started, "the worker process could not be reached")
            return
        deadline = started + self.pool.job_timeout_s
        while True:
            if worker.conn.poll(_POLL_SECONDS):
                try:
                    kind, _job_id, detail = worker.conn.recv()
                except (EOFError, OSError):
                    self._lost(job, started, "the worker process died during the analysis")
                    return
                if kind == "done":
                    self._finish(job, started, payload=detail)
                else:
                    self._finish(job, started, error=str(detail))
                return
            if not worker.alive:
                self._lost(job, started, "the worker process died during the analysis")
                return
            if self.pool.stopping.is_set():
                # clean shutdown: give the job back; the next start runs it again
                worker.kill()
                self.ready = False
                if self.pool.store.release(job.id, job.attempt):
                    self.pool.notify(Outcome(job, "requeued", time.monotonic() - started))
                return
            if time.monotonic() >= deadline:
                worker.kill()
                self.ready = False
                self._finish(job, started, error=self._timeout_message())
                return

    def _run_in_thread(self, job: ClaimedJob, spec: JobSpec, started: float) -> None:
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["payload"] = run_job(self._detector, spec)
            except Exception as exc:
                box["error"] = _internal_error(exc)

        runner = threading.Thread(target=target, name=f"medforensics-job-{job.id}", daemon=True)
        runner.start()
        runner.join(self.pool.job_timeout_s)
        if runner.is_alive():
            # a thread cannot be killed: its late answer is dropped by the conditional update
            self._finish(job, started, error=self._timeout_message())
            self._detector = None  # the stuck thread keeps the old instance
            self.ready = False
            return
        if "payload" in box:
            self._finish(job, started, payload=box["payload"])
        else:
            self._finish(job, started, error=str(box.get("error", "no answer from the worker")))

    def _timeout_message(self) -> str:
        return (
            f"the analysis did not finish within the time limit of {self.pool.job_timeout_s:g} s "
            "and was stopped; send a smaller input, or ask the operator to raise "
            "MEDFORENSICS_JOB_TIMEOUT_S"
        )

    def _lost(self, job: ClaimedJob, started: float, reason: str) -> None:
        self.ready = False
        status = self.pool.store.fail(
            job.id, job.attempt, f"{reason} (attempt {job.attempt})", retry=True
        )
        self.pool.notify(
            Outcome(
                job,
                "requeued" if status == "queued" else (status or "lost"),
                time.monotonic() - started,
                error=reason,
            )
        )
        if status == "queued":
            self.pool.wake()

    def _finish(
        self,
        job: ClaimedJob,
        started: float,
        *,
        payload: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        seconds = time.monotonic() - started
        if payload is not None:
            written = self.pool.store.complete(
                job.id,
                job.attempt,
                report=payload["report"],
                artefacts=payload["artefacts"],
                verdict=payload["verdict"],
                score=payload["score"],
            )
            outcome = Outcome(job, "done" if written else "lost", seconds, payload=payload)
        else:
            written = (
                self.pool.store.fail(job.id, job.attempt, error or "unknown error") is not None
            )
            outcome = Outcome(job, "failed" if written else "lost", seconds, error=error)
        self.pool.notify(outcome)


class WorkerPool:
    """Starts and stops the slots; tells listeners about each outcome."""

    def __init__(
        self,
        store: JobStore,
        blobs: BlobStore,
        *,
        detector: str,
        workers: int,
        mode: str,
        job_timeout_s: float,
        data_dir: Path,
        artefacts_dir: Path,
        work_dir: Path,
        reports: bool,
        log_phi: bool,
        plugins: Sequence[str] = (),
        instance: str | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.detector = detector
        self.size = workers
        self.mode = mode
        self.job_timeout_s = job_timeout_s
        self.data_dir = data_dir
        self.artefacts_dir = artefacts_dir
        self.work_dir = work_dir
        self.reports = reports
        self.log_phi = log_phi
        self.plugins = tuple(plugins)
        self.instance = instance or f"{os.uname().nodename[:24]}-{os.getpid()}"
        self.stopping = threading.Event()
        self.wakeup = threading.Event()
        self.slots: list[WorkerSlot] = []
        self.listeners: list[Callable[[Outcome], None]] = []

    def start(self) -> None:
        self.stopping.clear()
        self.slots = [WorkerSlot(self, index) for index in range(self.size)]
        for slot in self.slots:
            slot.start()

    def stop(self, timeout: float = 15.0) -> None:
        self.stopping.set()
        self.wakeup.set()
        deadline = time.monotonic() + timeout
        for slot in self.slots:
            slot.join(max(0.1, deadline - time.monotonic()))

    def wake(self) -> None:
        self.wakeup.set()

    def notify(self, outcome: Outcome) -> None:
        for listener in self.listeners:
            try:
                listener(outcome)
            except Exception:
                service_logger().exception("an outcome listener failed for %s", outcome.job.id)

    @property
    def alive(self) -> int:
        return sum(1 for slot in self.slots if slot.alive)

    @property
    def ready(self) -> int:
        return sum(1 for slot in self.slots if slot.ready)

    @property
    def running(self) -> int:
        return sum(1 for slot in self.slots if slot.current is not None)

    def model_description(self) -> dict[str, Any] | None:
        for slot in self.slots:
            if slot.description is not None:
                return slot.description
        return None

    def problems(self) -> list[str]:
        return sorted({slot.fatal for slot in self.slots if slot.fatal})
