"""kill -9 the server with jobs queued and running; after a restart every job completes once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from medforensics.db import make_engine
from medforensics.service.models import Analysis
from tests.service import slow_detector
from tests.service.inputs import png_bytes
from tests.service.server import create_key, start_server

pytestmark = [pytest.mark.slow, pytest.mark.serial]

JOBS = 6
DELAY_S = 1.5


def _statuses(client) -> dict[str, str]:  # type: ignore[no-untyped-def]
    items = client.get("/v1/analyses", params={"limit": 100}).json()["items"]
    return {item["id"]: item["status"] for item in items}


def test_kill9_with_jobs_queued_and_running_then_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runs = tmp_path / "runs.log"
    env = {
        "MEDFORENSICS_PLUGINS": slow_detector.__name__,
        "MEDFORENSICS_TEST_DELAY_S": str(DELAY_S),
        "MEDFORENSICS_TEST_RUN_LOG": str(runs),
        "MEDFORENSICS_REPORTS": "false",
    }
    key = create_key(data, None, "crash-test")
    first = start_server(data, workers=2, detector=slow_detector.NAME, env=env)
    second = None
    try:
        with first.client(key) as client:
            ids = []
            for seed in range(JOBS):
                response = client.post(
                    "/v1/analyses", files={"files": (f"{seed}.png", png_bytes(64, seed=seed))}
                )
                assert response.status_code == 202, response.text
                ids.append(response.json()["id"])
            deadline = time.monotonic() + 60
            while True:  # crash while two are running and the rest wait
                states = _statuses(client)
                running = [i for i, s in states.items() if s == "running"]
                if len(running) == 2 and list(states.values()).count("queued") >= 2:
                    break
                assert time.monotonic() < deadline, states
                time.sleep(0.05)
        # the crash: SIGKILL to the server alone; its orphaned workers finish their job, find
        # the pipe closed and exit, and have no database connection to record anything with
        first.kill9()
        assert first.process.returncode == -9
        before = {row.id: row for row in _rows(data)}
        assert {before[i].status for i in running} == {"running"}
        assert all(before[i].completions == 0 for i in ids if before[i].status != "done")

        second = start_server(data, workers=2, detector=slow_detector.NAME, env=env)
        with second.client(key) as client:
            deadline = time.monotonic() + 120
            while True:
                states = _statuses(client)
                if all(status in ("done", "failed") for status in states.values()):
                    break
                assert time.monotonic() < deadline, states
                time.sleep(0.1)
        assert sorted(states) == sorted(ids)
        assert set(states.values()) == {"done"}
        second.stop()
    finally:
        first.kill_group()
        if second is not None:
            second.stop()
    after = {row.id: row for row in _rows(data)}
    # exactly one recorded completion per job, whatever ran when the server died
    assert [after[i].completions for i in ids] == [1] * JOBS
    for job_id in running:  # the interrupted jobs ran again, as a second attempt
        assert after[job_id].attempts == 2
    for job_id in ids:
        if before[job_id].status == "queued":
            assert after[job_id].attempts == 1
    # the run log shows the interrupted analyses were started twice but completed once each
    starts = [line for line in runs.read_text().splitlines() if line.startswith("start")]
    assert len(starts) == JOBS + len(running)
    audit = pytest.importorskip("medforensics.provenance.audit")
    engine = make_engine(f"sqlite:///{data / 'medforensics.db'}")
    try:
        log = audit.AuditLog(engine)
        entries = log.entries(newest_first=False)
        assert log.verify().ok
    finally:
        engine.dispose()
    # one audit entry per job, by the key that submitted it, naming the analysis (no file name)
    assert sorted(e.result["input"] for e in entries) == sorted(f"analysis {i}" for i in ids)
    assert {e.actor for e in entries} == {key.split("_")[1]}
    assert '"requeued":2' in second.log.read_text()


def _rows(data: Path) -> list[Any]:
    engine = make_engine(f"sqlite:///{data / 'medforensics.db'}")
    try:
        with engine.connect() as connection:
            return list(connection.execute(select(Analysis.__table__)).all())
    finally:
        engine.dispose()
