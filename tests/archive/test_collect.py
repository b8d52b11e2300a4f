"""How the client treats a cluster task that did not return: lost, killed its worker, crashed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, KilledWorker
from distributed.client import FutureCancelledError
from sqlalchemy import select
from sqlalchemy.orm import Session

from medforensics.archive import ArchiveOptions, ArchiveTask, RunCounters, RunReport, TaskStore
from medforensics.archive.runner import _Run
from medforensics.archive.tasks import FileStamp, SeriesTask, make_task
from medforensics.db import make_engine


class _Gone:
    """Stands for a Dask future whose result raises ``error``."""

    def __init__(self, key: str, error: Exception) -> None:
        self.key, self.error = key, error

    def result(self) -> object:
        raise self.error

    def release(self) -> None:
        pass


def _task(name: str) -> SeriesTask:
    return make_task("/a", name, "dicom-series", [FileStamp(f"/a/{name}/1.dcm", 10, 1)])


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """In-process and without workers: only the client-side bookkeeping runs here."""
    with Client(processes=False, n_workers=0, dashboard_address=None) as in_process:
        yield in_process


@pytest.fixture
def run(client: Client, tmp_path: Path) -> _Run:
    store = TaskStore(make_engine(f"sqlite:///{tmp_path / 'a.db'}"))
    report = RunReport("run1", "/a", "d", "running", RunCounters(), 0.0, 0.0, 1)
    return _Run(client, store, ArchiveOptions(detector="d"), report, None)


def _statuses(run: _Run) -> dict[str, tuple[str, str | None]]:
    with Session(run.store.engine) as session:
        rows = session.scalars(select(ArchiveTask))
        return {row.location: (row.status, row.error) for row in rows}


def _send(run: _Run, batch: list[SeriesTask], error: Exception) -> None:
    run.store.queue(batch, "d", "run1")
    future = _Gone("k", error)
    run.running["k"] = (future, batch)  # type: ignore[assignment]
    run.counters.in_flight += len(batch)
    run.collect(future)  # type: ignore[arg-type]


def test_a_task_the_cluster_lost_stays_queued_for_the_next_run(run: _Run) -> None:
    _send(run, [_task("a"), _task("b")], FutureCancelledError("k", "scheduler restarted"))
    assert run.counters.lost == 2 and run.counters.answered == 0
    assert _statuses(run) == {"a": ("queued", None), "b": ("queued", None)}


def test_a_batch_that_kills_workers_is_split_then_the_culprit_fails(run: _Run) -> None:
    _send(run, [_task("a"), _task("b")], KilledWorker("k", "w", 3))
    assert [[t.location for t in batch] for batch in run.retry] == [["a"], ["b"]]
    assert run.counters.answered == 0
    _send(run, [_task("a")], KilledWorker("k", "w", 3))
    status, error = _statuses(run)["a"]
    assert status == "failed" and "died every time" in (error or "")
    assert run.counters.failed == 1 and len(run.retry) == 2  # "b" still waits for its turn


def test_a_crash_in_the_task_function_fails_its_tasks_with_the_reason(run: _Run) -> None:
    _send(run, [_task("a")], RuntimeError("boom"))
    status, error = _statuses(run)["a"]
    assert status == "failed" and "RuntimeError: boom" in (error or "")
