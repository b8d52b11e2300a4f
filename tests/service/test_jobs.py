"""The database queue: claims are exclusive, a completion is recorded once, restarts re-queue."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from medforensics.db import make_engine
from medforensics.service.jobs import InputFile, JobStore, QueueFull
from medforensics.service.models import DONE, FAILED, QUEUED, RUNNING, Analysis

INPUT = InputFile("a.png", "0" * 64, 10, "png")


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(make_engine(f"sqlite:///{tmp_path / 'q.db'}"), max_attempts=2)


def submit(store: JobStore, n: int = 1, limit: int = 100) -> list[str]:
    return [
        store.submit(
            tenant="t", key_id="k", detector="d", modality=None, inputs=[INPUT], queue_limit=limit
        ).id
        for _ in range(n)
    ]


def test_claims_are_oldest_first_and_exclusive(store: JobStore) -> None:
    ids = submit(store, 12)
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while (job := store.claim(name)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids) and len(set(claimed)) == len(ids)
    assert store.counts_by_status() == {RUNNING: 12}


def test_small_inputs_overtake_recent_large_ones_but_not_old_ones(store: JobStore) -> None:
    def put(size: int, seconds_per_mib: float = 1.0) -> str:
        item = InputFile("x", "0" * 64, size, "zip")
        return store.submit(
            tenant="t", key_id="k", detector="d", modality=None, inputs=[item],
            queue_limit=100, seconds_per_mib=seconds_per_mib,
        ).id  # fmt: skip

    series = put(60 * 2**20)  # 60 MiB: a minute's delay
    radiograph = put(2**19)
    fifo = put(60 * 2**20, seconds_per_mib=0.0)  # no delay at all
    order = [job.id for job in iter(lambda: store.claim("w"), None)]
    assert order == [fifo, radiograph, series]
    # a large job waits at most its delay: one submitted long ago goes first
    old_series = put(2**20)
    with store.session() as session, session.begin():
        analysis = session.get(Analysis, old_series)
        assert analysis is not None
        analysis.priority_at = analysis.priority_at - timedelta(seconds=10)
    later = put(2**10)
    assert [job.id for job in iter(lambda: store.claim("w"), None)] == [old_series, later]


def test_claim_carries_inputs_and_attempt(store: JobStore) -> None:
    (job_id,) = submit(store)
    job = store.claim("w")
    assert job is not None and job.id == job_id and job.attempt == 1
    assert job.inputs == (INPUT,)
    assert store.claim("w") is None


def test_a_completion_is_recorded_once_and_stale_attempts_are_dropped(store: JobStore) -> None:
    (job_id,) = submit(store)
    first = store.claim("w1")
    assert first is not None
    assert store.recover().requeued == [job_id]  # the server "restarted"
    second = store.claim("w2")
    assert second is not None and second.attempt == 2
    report = {"tool": "medforensics", "results": []}
    # the first attempt's late answer finds nothing to update
    assert not store.complete(job_id, 1, report=report, artefacts=[], verdict=None, score=None)
    assert store.fail(job_id, 1, "late") is None
    assert store.complete(job_id, 2, report=report, artefacts=[], verdict="authentic", score=0.1)
    assert not store.complete(job_id, 2, report=report, artefacts=[], verdict=None, score=None)
    analysis = store.get(job_id)
    assert analysis is not None
    assert (analysis.status, analysis.attempts, analysis.completions) == (DONE, 2, 1)
    assert analysis.verdict == "authentic"


def test_recovery_fails_jobs_out_of_attempts(store: JobStore) -> None:
    (job_id,) = submit(store)
    for _ in range(2):
        assert store.claim("w") is not None
        store.recover()
    analysis = store.get(job_id)
    assert analysis is not None and analysis.status == FAILED
    assert "interrupted 2 times" in (analysis.error or "")
    assert analysis.completions == 1


def test_fail_with_retry_requeues_until_attempts_run_out(store: JobStore) -> None:
    (job_id,) = submit(store)
    job = store.claim("w")
    assert job is not None
    assert store.fail(job_id, job.attempt, "worker died", retry=True) == QUEUED
    job = store.claim("w")
    assert job is not None and job.attempt == 2
    assert store.fail(job_id, job.attempt, "worker died", retry=True) == FAILED


def test_release_gives_the_job_back(store: JobStore) -> None:
    (job_id,) = submit(store)
    job = store.claim("w")
    assert job is not None and store.release(job_id, job.attempt)
    assert store.queued_count() == 1


def test_queue_limit(store: JobStore) -> None:
    submit(store, 3, limit=3)
    with pytest.raises(QueueFull) as raised:
        submit(store, 1, limit=3)
    assert raised.value.queued == 3


def test_tenant_scoping(store: JobStore) -> None:
    (job_id,) = submit(store)
    assert store.get(job_id, tenant="t") is not None
    assert store.get(job_id, tenant="other") is None
    page, total = store.list_for_tenant("other", limit=10, offset=0)
    assert (page, total) == ([], 0)
