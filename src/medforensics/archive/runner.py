"""Drive an archive scan: walk, skip what is recorded, stream batches to Dask, record answers.

The walk runs in a thread and feeds a bounded queue; the main thread keeps a bounded number of
batches in flight on the cluster (``as_completed``), writes each answer to the database as it
arrives and refills. Memory on the client is bounded by the queue and the batches in flight,
whatever the size of the archive.

Exactly once: a task is submitted at most once per run (a batch that killed its worker is split
and its tasks resubmitted alone, once); the client records answers, and ``TaskStore.record`` never
overwrites a task already ``done``. Dask may run a task again when the worker holding it dies;
such a repeat is never recorded twice.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from medforensics.archive.discover import SkippedFile, WalkProblem, discover
from medforensics.archive.store import TaskStore
from medforensics.archive.tasks import DONE, FAILED, SeriesTask, pack
from medforensics.archive.worker import TaskOutcome, analyse_batch, import_plugins, preload
from medforensics.scan import DEFAULT_DETECTOR, ResultFinding, ScanResult

if TYPE_CHECKING:
    from distributed import Client, Future

#: examples of skipped files and walk problems kept for the summary (the counts are complete)
EXAMPLES_KEPT = 50


class ArchiveError(RuntimeError):
    """The run cannot start or go on (no such folder, detector missing on the workers...)."""


@dataclass(frozen=True)
class ArchiveOptions:
    """How an archive is scanned.

    Attributes:
        detector: registry name of the detector, created once per worker process.
        plugins: modules imported on the client and every worker before the detector is
            created (they register extra detectors).
        retry_failed: hand tasks recorded as failed to the cluster again (the default: a rerun
            retries what failed); False skips them like done ones, for large archives where
            the failures are damaged files that fail the same way every time.
        audit: append every analysed volume to the hash-chained audit log.
        limit: hand at most this many new tasks to the cluster, then stop (rerun to go on).
        batch_files: small tasks share one cluster task up to about this many files.
        in_flight: cluster tasks submitted and not yet answered, at most (default: twice the
            worker threads, plus two).
        lookup_chunk: tasks looked up in the database at once.
    """

    detector: str = DEFAULT_DETECTOR
    plugins: tuple[str, ...] = ()
    retry_failed: bool = True
    audit: bool = False
    limit: int | None = None
    batch_files: int = 64
    in_flight: int | None = None
    lookup_chunk: int = 128


@dataclass
class RunCounters:
    """What a run did so far; ``analysed + failed`` answers were recorded by this run.

    ``duplicates``: answers for tasks already done (never recorded twice); ``resubmitted``:
    tasks of a batch that killed its worker, sent again one by one; ``lost``: tasks the cluster
    dropped (cancelled, connection lost), left queued for the next run.
    """

    discovered: int = 0
    skipped_done: int = 0
    skipped_failed: int = 0
    submitted: int = 0
    analysed: int = 0
    failed: int = 0
    duplicates: int = 0
    resubmitted: int = 0
    lost: int = 0
    in_flight: int = 0
    skipped_files: int = 0
    walk_problems: int = 0
    audit_entries: int = 0
    audit_errors: int = 0
    discovery_done: bool = False
    limit_reached: bool = False

    @property
    def answered(self) -> int:
        return self.analysed + self.failed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunReport:
    """The outcome of ``run_archive``."""

    run_id: str
    root: str
    detector: str
    status: str
    counters: RunCounters
    started: float
    elapsed_s: float
    workers: int
    model: dict[str, Any] = field(default_factory=dict)
    skipped_examples: list[SkippedFile] = field(default_factory=list)
    walk_problems: list[WalkProblem] = field(default_factory=list)


ProgressHook = Callable[[RunCounters, float], None]

_END = ("end", None)


class _Feeder(threading.Thread):
    """The walk: discovers tasks, looks them up in chunks, queues batches still to do."""

    def __init__(
        self,
        root: str,
        store: TaskStore,
        options: ArchiveOptions,
        counters: RunCounters,
        report: RunReport,
        out: queue.Queue[tuple[str, Any]],
    ) -> None:
        super().__init__(name="medforensics-archive-walk", daemon=True)
        self.root, self.store, self.options = root, store, options
        self.counters, self.report, self.out = counters, report, out
        self.stop = threading.Event()
        self.taken = 0

    def run(self) -> None:
        try:
            chunk: list[SeriesTask] = []
            chunk_started = time.monotonic()
            for item in discover(self.root):
                if self.stop.is_set():
                    return
                if isinstance(item, SkippedFile):
                    self.counters.skipped_files += 1
                    if len(self.report.skipped_examples) < EXAMPLES_KEPT:
                        self.report.skipped_examples.append(item)
                    continue
                if isinstance(item, WalkProblem):
                    self.counters.walk_problems += 1
                    if len(self.report.walk_problems) < EXAMPLES_KEPT:
                        self.report.walk_problems.append(item)
                    continue
                if not chunk:
                    chunk_started = time.monotonic()
                chunk.append(item)
                # flush full chunks, and small ones when the walk is slow (a network share)
                if len(chunk) >= self.options.lookup_chunk or time.monotonic() - chunk_started > 1:
                    if not self._flush(chunk):
                        return
                    chunk = []
            self._flush(chunk)
            self.counters.discovery_done = True
        except BaseException as exc:
            self._put(("error", exc))
        finally:
            self._put(_END)

    def _flush(self, chunk: list[SeriesTask]) -> bool:
        """Queue the chunk's tasks still to do; False once ``limit`` tasks were taken."""
        options = self.options
        statuses = self.store.statuses([t.key for t in chunk], options.detector)
        seen: list[str] = []
        todo: list[SeriesTask] = []
        for task in chunk:
            status = statuses.get(task.key)
            if status == DONE or (status == FAILED and not options.retry_failed):
                seen.append(task.key)
                self.counters.discovered += 1
                if status == DONE:
                    self.counters.skipped_done += 1
                else:
                    self.counters.skipped_failed += 1
                continue
            if options.limit is not None and self.taken >= options.limit:
                self.counters.limit_reached = True
                break
            todo.append(task)
            self.taken += 1
            self.counters.discovered += 1
        if seen and not self._put(("seen", seen)):
            return False
        for batch in pack(todo, options.batch_files):
            if not self._put(("batch", batch)):
                return False
        return not self.counters.limit_reached

    def _put(self, item: tuple[str, Any]) -> bool:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False


def _failed_outcome(task: SeriesTask, message: str) -> TaskOutcome:
    where = f"{task.root.rstrip('/')}/{task.location}"
    result = ScanResult(
        input=where,
        kind=None,
        modality=None,
        shape=None,
        score=None,
        verdict=None,
        error=message,
        location=where,
        series_instance_uid=task.series_uid,
        study_instance_uid=task.study_uid,
        files=task.n_files,
    )
    return TaskOutcome(task.key, FAILED, [result.to_dict()], 0.0, 0.0, "", 0)


def scan_result_from_dict(data: dict[str, Any]) -> ScanResult:
    """Rebuild a ``ScanResult`` from ``to_dict()`` output (e.g. for the audit log)."""
    fields = dict(data)
    fields["findings"] = [ResultFinding(**f) for f in fields.get("findings") or []]
    return ScanResult(**fields)


class _Auditor:
    def __init__(self, store: TaskStore) -> None:
        from medforensics.provenance.audit import AuditLog

        self.log = AuditLog(store.engine)
        self.actor = f"cli:{getpass.getuser()}"

    def record(self, outcome: TaskOutcome) -> int:
        from medforensics.provenance.audit import record_scan_result

        written = 0
        for data in outcome.results:
            if data.get("error"):
                continue
            result = scan_result_from_dict(data)
            record_scan_result(
                self.log,
                result,
                actor=self.actor,
                model=outcome.model,
                input_hashes=outcome.input_hashes,
            )
            written += 1
        return written


class _Run:
    """One run's state on the client."""

    def __init__(
        self,
        client: Client,
        store: TaskStore,
        options: ArchiveOptions,
        report: RunReport,
        on_progress: ProgressHook | None,
    ) -> None:
        from distributed import as_completed

        self.client, self.store, self.options, self.report = client, store, options, report
        self.counters = report.counters
        self.on_progress = on_progress
        self.running: dict[Any, tuple[Future, list[SeriesTask]]] = {}
        self.completed = as_completed()
        self.retry: deque[list[SeriesTask]] = deque()
        self.auditor = _Auditor(store) if options.audit else None
        self.number = 0
        self.lost_reason = ""

    def submit(self, batch: list[SeriesTask], again: bool = False) -> None:
        self.store.queue(batch, self.options.detector, self.report.run_id)
        self.number += 1
        future = self.client.submit(
            analyse_batch,
            batch,
            self.options.detector,
            self.options.plugins,
            self.options.audit,
            key=f"medforensics-archive-{self.report.run_id[:12]}-{self.number}",
            pure=False,
        )
        self.running[future.key] = (future, batch)
        self.completed.add(future)
        if again:
            self.counters.resubmitted += len(batch)
        else:
            self.counters.submitted += len(batch)
        self.counters.in_flight += len(batch)

    def collect(self, future: Future) -> None:
        from distributed import KilledWorker

        _, batch = self.running.pop(future.key)
        self.counters.in_flight -= len(batch)
        try:
            outcomes: list[TaskOutcome] = future.result()
        except KilledWorker:
            if len(batch) > 1:  # find which task it was: each goes again, alone
                self.retry.extend([task] for task in batch)
                return
            outcomes = [
                _failed_outcome(
                    batch[0],
                    "the worker analysing this series died every time it was tried (out of "
                    "memory, or a crash inside a decoder?); check the files, then rerun",
                )
            ]
        except (CancelledError, OSError) as exc:
            # the cluster lost it (scheduler restarted, connection gone): not the input's fault,
            # so nothing is recorded; the rows stay queued and the next run analyses them
            self.counters.lost += len(batch)
            self.lost_reason = f"{type(exc).__name__}: {exc}"
            return
        except Exception as exc:  # a bug in the worker function: say so on every task
            message = f"the cluster could not run this task ({type(exc).__name__}: {exc})"
            outcomes = [_failed_outcome(task, message) for task in batch]
        finally:
            future.release()
        recorded = self.store.record(outcomes, self.options.detector, self.report.run_id)
        for outcome, new in zip(outcomes, recorded, strict=True):
            if not new:
                self.counters.duplicates += 1
                continue
            if outcome.status == DONE:
                self.counters.analysed += 1
            else:
                self.counters.failed += 1
            if outcome.model and not self.report.model:
                self.report.model = outcome.model
            if self.auditor is not None:
                try:
                    self.counters.audit_entries += self.auditor.record(outcome)
                except Exception:  # the result is recorded; the audit gap is counted and shown
                    self.counters.audit_errors += 1

    def progress(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.counters, time.time() - self.report.started)

    def cancel(self) -> None:
        futures = [future for future, _ in self.running.values()]
        if futures:
            # the scheduler may be gone already: then there is nothing left to cancel
            with contextlib.suppress(Exception):
                self.client.cancel(futures)
        self.running.clear()


def _probe(client: Client, options: ArchiveOptions) -> tuple[int, dict[str, Any]]:
    """Create the detector on every worker now; fail the run if any worker cannot."""
    try:
        client.wait_for_workers(1, timeout=120)
    except Exception as exc:
        raise ArchiveError(f"no Dask worker joined the scheduler within 2 minutes ({exc})") from exc
    workers = list(client.nthreads())
    futures = [
        client.submit(
            preload,
            options.detector,
            options.plugins,
            workers=[address],
            allow_other_workers=True,
            pure=False,
            key=f"medforensics-preload-{uuid.uuid4().hex[:12]}",
        )
        for address in workers
    ]
    try:
        described = client.gather(futures)
    except Exception as exc:
        raise ArchiveError(
            f"detector {options.detector!r} cannot be created on the workers: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    model = {k: v for k, v in described[0].items() if k not in ("worker", "pid")}
    return len(workers), model


def run_archive(
    root: str,
    client: Client,
    store: TaskStore,
    options: ArchiveOptions | None = None,
    on_progress: ProgressHook | None = None,
) -> RunReport:
    """Scan the archive below ``root`` on ``client``'s cluster, recording into ``store``.

    Returns when every task found is answered (or ``options.limit`` tasks were); an interrupt
    (Ctrl-C) cancels what is in flight, marks the run ``interrupted`` and re-raises: the answers
    recorded so far stay, and a rerun resumes from there.

    Raises:
        ArchiveError: ``root`` does not exist, or the detector cannot be created on the workers.
    """
    options = options or ArchiveOptions()
    top = os.path.abspath(root)
    if not os.path.exists(top):
        raise ArchiveError(f"{root}: no such file or folder")
    import_plugins(options.plugins)
    workers, model = _probe(client, options)
    run_id = uuid.uuid4().hex
    report = RunReport(
        run_id, top, options.detector, "running", RunCounters(), time.time(), 0.0, workers, model
    )
    store.start_run(run_id, top, options.detector, asdict(options) | {"workers": workers})
    threads = sum(client.nthreads().values()) or 1
    limit = options.in_flight or 2 * threads + 2
    feed: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=4 * limit)
    feeder = _Feeder(top, store, options, report.counters, report, feed)
    run = _Run(client, store, options, report, on_progress)
    feeder.start()
    exhausted = False
    try:
        while True:
            while len(run.running) < limit:
                if run.retry:
                    run.submit(run.retry.popleft(), again=True)
                    continue
                if exhausted:
                    break
                try:
                    kind, payload = feed.get(timeout=0.05 if run.running else 0.5)
                except queue.Empty:
                    break
                if kind == "end":
                    exhausted = True
                elif kind == "error":
                    raise ArchiveError(f"the walk of {top} stopped: {payload}") from payload
                elif kind == "seen":
                    store.mark_seen(payload, options.detector, run_id)
                else:
                    run.submit(payload)
                run.progress()
            if not run.running:
                if exhausted and not run.retry:
                    break
                continue
            block = exhausted or len(run.running) >= limit
            if block or run.completed.has_ready():
                for future in run.completed.next_batch(block=True):
                    run.collect(future)
                run.progress()
        report.status = "limited" if report.counters.limit_reached else "finished"
    except BaseException as exc:
        report.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        run.cancel()
        raise
    finally:
        feeder.stop.set()
        _drain(feed)
        feeder.join(timeout=5)
        report.elapsed_s = time.time() - report.started
        store.finish_run(run_id, report.status, report.counters.to_dict())
    return report


def _drain(feed: queue.Queue[tuple[str, Any]]) -> None:
    while True:
        try:
            feed.get_nowait()
        except queue.Empty:
            return
