"""Worker processes: the model is loaded once per worker, a job over the time limit is killed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.service import slow_detector
from tests.service.inputs import png_bytes

pytestmark = pytest.mark.anyio

PLUGIN = slow_detector.__name__


async def test_one_worker_process_loads_the_detector_once_and_runs_every_job(
    api_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "runs.log"
    monkeypatch.setenv("MEDFORENSICS_TEST_DELAY_S", "0.2")
    monkeypatch.setenv("MEDFORENSICS_TEST_RUN_LOG", str(log))
    async with api_factory(
        worker_mode="process", detector=slow_detector.NAME, plugins=(PLUGIN,), job_timeout_s=3.0
    ) as api:
        quick = await api.submit([("quick.png", png_bytes(seed=1))], wait="true", timeout=60)
        assert quick.status_code == 200, quick.text
        assert quick.json()["status"] == "done"
        first_pid = log.read_text().split()[1]
        again = await api.submit([("again.png", png_bytes(seed=2))], wait="true", timeout=60)
        assert again.json()["status"] == "done"
        # the same worker process (detector loaded once) ran both
        assert {line.split()[1] for line in log.read_text().splitlines()} == {first_pid}


async def test_a_job_over_the_time_limit_fails_clearly_and_the_worker_is_replaced(
    api_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDFORENSICS_TEST_DELAY_S", "30")
    async with api_factory(
        worker_mode="process", detector=slow_detector.NAME, plugins=(PLUGIN,), job_timeout_s=2.0
    ) as api:
        response = await api.submit([("slow.png", png_bytes())])
        body = await api.wait_done(response.json()["id"], timeout=60)
        assert body["status"] == "failed"
        assert "time limit of 2 s" in body["error"]
        assert body["result"] is None and body["attempts"] == 1
        # a fresh worker process is started for the next job
        for _ in range(200):
            ready = (await api.client.get("/readyz")).json()
            if ready["workers_ready"] == 1:
                break
            await asyncio.sleep(0.1)
        assert ready["workers_ready"] == 1
