"""The real server: ``medforensics serve`` (uvicorn) on a loopback port, SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.inputs import ct_series_files, png_bytes
from tests.service.server import (
    Postgres,
    create_key,
    postgres_available,
    running_server,
    start_postgres,
)

pytestmark = pytest.mark.serial


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    if not postgres_available():
        pytest.skip("PostgreSQL server binaries are not installed (/usr/lib/postgresql/15/bin)")
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


def exercise(server_data: Path, db_url: str | None, tmp_path: Path) -> None:
    """Keys from the CLI, uploads, results, artefacts, errors and metrics over real HTTP."""
    key = create_key(server_data, db_url, "clinic-a")
    other = create_key(server_data, db_url, "clinic-b")
    with running_server(server_data, db_url=db_url) as server:
        with server.client() as anonymous:
            assert anonymous.get("/healthz").json() == {"status": "ok"}
            assert anonymous.get("/v1/analyses").status_code == 401
            assert "openapi" in anonymous.get("/openapi.json").json()
        with server.client(key) as client:
            radiograph = client.post(
                "/v1/analyses",
                params={"wait": "true"},
                files={"files": ("chest.png", png_bytes(), "image/png")},
            )
            assert radiograph.status_code == 200, radiograph.text
            body = radiograph.json()
            assert body["status"] == "done" and body["result"]["results"][0]["shape"][0] == 1
            series = ct_series_files(tmp_path / "ct", slices=4)
            queued = client.post(
                "/v1/analyses", files=[("files", (p.name, p.read_bytes())) for p in series]
            )
            assert queued.status_code == 202, queued.text
            location = queued.headers["location"]
            deadline = time.monotonic() + 120
            while (state := client.get(location).json())["status"] not in ("done", "failed"):
                assert time.monotonic() < deadline, state
                time.sleep(0.1)
            assert state["status"] == "done", state
            assert state["result"]["results"][0]["shape"] == [4, 64, 64]
            sr = client.get(state["links"]["sr_dcm"])
            assert sr.status_code in (200, 404)  # 404 only where reports are not installed
            if sr.status_code == 200:
                assert sr.content[128:132] == b"DICM"
            listed = client.get("/v1/analyses").json()
            assert listed["total"] == 2
            unsupported = client.post(
                "/v1/analyses", files={"files": ("a.dcm", b"just text, not DICOM" * 20)}
            )
            assert unsupported.status_code == 415
        with server.client(other) as intruder:
            assert intruder.get(location).status_code == 404
            assert intruder.get("/v1/analyses").json()["total"] == 0
        with server.client() as anonymous:
            metrics = anonymous.get("/metrics").text
            assert 'medforensics_analyses{status="done"} 2' in metrics
            ready = anonymous.get("/readyz").json()
            assert ready["workers_ready"] == 2 and ready["database"]
        logged = server.log.read_text()
    # logs are JSON lines and name no input file
    assert '"event":"analysis.done"' in logged and "chest.png" not in logged


def test_real_server_on_sqlite(tmp_path: Path) -> None:
    data = tmp_path / "data"
    exercise(data, None, tmp_path)
    assert (data / "medforensics.db").is_file()


def test_real_server_on_postgresql(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.create_database("medforensics_server_test")
    exercise(tmp_path / "data", url, tmp_path)
    # the SQLite file was not used: everything went to PostgreSQL
    assert not (tmp_path / "data" / "medforensics.db").exists()
