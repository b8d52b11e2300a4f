"""Archive scans on a real two-worker LocalCluster: exactly once, worker loss, resume, CLI.

The detector is ``test-archive-flag`` (tests/archive/__init__.py): it flags series described as
TAMPERED, so these tests check the plumbing (every series reaches a detector once and its answer
lands in the right row), not detection.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from medforensics.archive import (
    ArchiveError,
    ArchiveOptions,
    ArchiveRun,
    ArchiveTask,
    RunCounters,
    TaskStore,
    open_client,
    run_archive,
    write_outputs,
)
from medforensics.db import make_engine
from tests.archive import (
    DELAY_ENV,
    MARKERS_ENV,
    PLUGIN,
    GeneratedArchive,
    make_archive,
    marker_counts,
)

pytestmark = pytest.mark.slow  # each starts work on a cluster of two worker processes

DETECTOR = "test-archive-flag"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> GeneratedArchive:
    return make_archive(tmp_path_factory.mktemp("archive") / "root", n_series=240)


@pytest.fixture(scope="module")
def markers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def client(markers_dir: Path) -> Iterator[Client]:
    """Two single-threaded worker processes; they inherit the marker folder and a small delay
    per analysis (so a run lasts long enough to kill a worker in the middle of it)."""
    saved = {name: os.environ.get(name) for name in (MARKERS_ENV, DELAY_ENV)}
    os.environ[MARKERS_ENV] = str(markers_dir)
    os.environ[DELAY_ENV] = "0.01"
    try:
        with open_client(workers=2) as dask_client:
            yield dask_client
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def markers(markers_dir: Path) -> Path:
    for path in markers_dir.iterdir():
        path.unlink()
    return markers_dir


def _store(folder: Path) -> TaskStore:
    return TaskStore(make_engine(f"sqlite:///{folder / 'archive.db'}"))


def _rows(store: TaskStore) -> list[ArchiveTask]:
    with Session(store.engine) as session:
        return list(session.scalars(select(ArchiveTask)))


def _options(**kwargs: object) -> ArchiveOptions:
    return ArchiveOptions(detector=DETECTOR, plugins=(PLUGIN,), **kwargs)  # type: ignore[arg-type]


def _check_complete(archive: GeneratedArchive, store: TaskStore, markers: Path) -> None:
    """One row per task, each answered once; every series analysed; the right ones flagged."""
    rows = _rows(store)
    assert len(rows) == archive.tasks
    assert len({row.task_key for row in rows}) == len(rows)
    assert [row.completions for row in rows] == [1] * len(rows)
    assert sum(row.status == "failed" for row in rows) == archive.broken
    assert sum(row.status == "done" for row in rows) == archive.tasks - archive.broken
    flagged = {row.series_uid for row in rows if row.verdict == "manipulated"}
    assert flagged == archive.tampered_uids
    counts = marker_counts(markers)
    assert set(archive.series_uids) <= set(counts)
    assert len(counts) == archive.tasks - archive.broken  # series, PNG, NIfTI, zipped series
    for row in rows:
        results = json.loads(row.results or "[]")
        assert results and {"input", "verdict", "score", "findings", "error"} <= set(results[0])


def test_every_series_is_analysed_exactly_once(
    archive: GeneratedArchive, client: Client, markers: Path, tmp_path: Path
) -> None:
    store = _store(tmp_path)
    report = run_archive(str(archive.root), client, store, _options(batch_files=16))
    assert report.status == "finished"
    counters = report.counters
    assert counters.submitted == archive.tasks == counters.analysed + counters.failed
    assert counters.failed == archive.broken and counters.duplicates == 0
    assert counters.skipped_files == archive.skipped_files
    _check_complete(archive, store, markers)
    assert set(marker_counts(markers).values()) == {1}  # no worker was lost: no repeat at all

    summary, files = write_outputs(store, report, tmp_path / "results")
    assert summary.verdicts["manipulated"] == len(archive.tampered_uids)
    assert summary.verdicts["authentic"] == archive.tasks - archive.broken - len(
        archive.tampered_uids
    )
    assert summary.errors_total == archive.broken and summary.exit_code == 2
    assert {s["series_uid"] for s in summary.top_series} == archive.tampered_uids
    # two series per study, one of them tampered
    assert len(summary.top_studies) == len(archive.tampered_uids)
    assert {(s["series"], s["flagged_series"]) for s in summary.top_studies} == {(2, 1)}
    assert (
        json.loads(files.summary_json.read_text())["tasks"]["done"]
        == archive.tasks - archive.broken
    )
    import pyarrow.parquet as pq

    table = pq.read_table(files.table)
    assert table.num_rows == archive.tasks
    assert sorted(table.column("status").to_pylist()).count("failed") == archive.broken
    page = files.report_html.read_text()
    assert "truncated" in page and "<script" not in page


def test_a_worker_killed_mid_run_loses_nothing(
    archive: GeneratedArchive, client: Client, markers: Path, tmp_path: Path
) -> None:
    store = _store(tmp_path)
    killed: list[int] = []
    pids_before = set(client.run(os.getpid).values())

    def kill_one_worker(counters: RunCounters, _elapsed: float) -> None:
        if not killed and counters.answered >= 40:
            victim = sorted(pids_before)[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    # one series per cluster task, so the dead worker surely held work in progress
    report = run_archive(
        str(archive.root),
        client,
        store,
        _options(batch_files=1),
        on_progress=kill_one_worker,
    )
    assert killed, "the run ended before a worker could be killed"
    assert report.status == "finished"
    assert report.counters.answered == archive.tasks
    _check_complete(archive, store, markers)
    # a series the dead worker held may have been analysed again elsewhere, never recorded twice
    repeats = sum(n - 1 for n in marker_counts(markers).values())
    assert repeats <= 2 * 2 + 2  # at most what was in flight
    assert client.run(os.getpid).values() and killed[0] not in client.run(os.getpid).values()


def test_a_resumed_run_does_no_repeated_work(
    archive: GeneratedArchive, client: Client, markers: Path, tmp_path: Path
) -> None:
    store = _store(tmp_path)
    first = run_archive(str(archive.root), client, store, _options(limit=100))
    assert first.status == "limited" and first.counters.answered == 100
    assert sum(marker_counts(markers).values()) == 100  # the walk order puts the series first
    second = run_archive(str(archive.root), client, store, _options())
    assert second.status == "finished"
    assert second.counters.skipped_done == 100
    assert second.counters.answered == second.counters.submitted == archive.tasks - 100
    _check_complete(archive, store, markers)
    assert set(marker_counts(markers).values()) == {1}

    third = run_archive(str(archive.root), client, store, _options(retry_failed=False))
    assert third.counters.submitted == 0
    assert third.counters.skipped_done == archive.tasks - archive.broken
    assert third.counters.skipped_failed == archive.broken
    summary, _ = write_outputs(store, third, tmp_path / "results")
    assert summary.tasks["done"] == archive.tasks - archive.broken  # the whole archive

    retried = run_archive(str(archive.root), client, store, _options())  # retries failed
    assert retried.counters.submitted == archive.broken == retried.counters.failed
    assert (
        sorted(row.attempts for row in _rows(store) if row.status == "failed")
        == [2] * archive.broken
    )
    assert set(marker_counts(markers).values()) == {1}


def test_an_interrupted_run_resumes_without_repeating_recorded_work(
    archive: GeneratedArchive, client: Client, markers: Path, tmp_path: Path
) -> None:
    store = _store(tmp_path)
    recorded: list[int] = []

    def interrupt(counters: RunCounters, _elapsed: float) -> None:
        if counters.answered >= 50:
            recorded.append(counters.answered)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_archive(str(archive.root), client, store, _options(batch_files=4), interrupt)
    with Session(store.engine) as session:
        runs = list(session.scalars(select(ArchiveRun)))
    assert [run.status for run in runs] == ["interrupted"]
    done_before = sum(row.status != "queued" for row in _rows(store))
    assert done_before == recorded[0]
    second = run_archive(str(archive.root), client, store, _options())
    assert second.counters.skipped_done + second.counters.skipped_failed == done_before
    assert second.counters.submitted == archive.tasks - done_before
    _check_complete(archive, store, markers)
    # only what was in flight when the first run stopped can have been analysed twice
    assert sum(n - 1 for n in marker_counts(markers).values()) <= (2 * 2 + 2) * 4


def test_an_unknown_detector_stops_the_run_before_it_starts(
    archive: GeneratedArchive, client: Client, tmp_path: Path
) -> None:
    store = _store(tmp_path)
    with pytest.raises(ArchiveError, match="no-such-detector"):
        run_archive(str(archive.root), client, store, ArchiveOptions(detector="no-such-detector"))
    assert _rows(store) == []


def test_cli_scans_resumes_and_audits(
    archive: GeneratedArchive, client: Client, markers: Path, tmp_path: Path
) -> None:
    from medforensics.cli.main import build_app

    address = client.scheduler.address
    out = tmp_path / "results"
    command = [
        "scan-archive", str(archive.root), "--out", str(out), "--scheduler", address,
        "--detector", DETECTOR, "--plugin", PLUGIN, "--format", "csv", "--audit",
    ]  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(build_app(), command)
    assert result.exit_code == 2, result.output  # the broken files
    assert (out / "report.html").is_file() and (out / "series.csv").is_file()
    assert len((out / "series.csv").read_text().splitlines()) == archive.tasks + 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdicts"]["manipulated"] == len(archive.tampered_uids)

    from medforensics.provenance.audit import AuditLog

    log = AuditLog(make_engine(f"sqlite:///{out / 'archive.db'}"))
    assert len(log.entries()) == archive.tasks - archive.broken and log.verify().ok

    again = runner.invoke(build_app(), command)  # a rerun retries only what failed
    assert again.exit_code == 2
    assert json.loads((out / "summary.json").read_text())["this_run"]["submitted"] == archive.broken
    assert len(log.entries()) == archive.tasks - archive.broken

    skipping = runner.invoke(build_app(), [*command, "--skip-failed"])
    assert skipping.exit_code == 2
    assert json.loads((out / "summary.json").read_text())["this_run"]["submitted"] == 0

    clean = make_archive(tmp_path / "clean", n_series=4, tampered_every=100).root
    for odd in (clean / "zz-other").iterdir():
        if odd.suffix == ".dcm":
            odd.unlink()
    command[1], command[3] = str(clean), str(tmp_path / "clean-results")
    assert runner.invoke(build_app(), command).exit_code == 0
    both = runner.invoke(build_app(), [*command, "--workers", "2"])
    assert both.exit_code == 2 and "not both" in both.output


def test_postgresql_store_resumes_like_sqlite(
    archive: GeneratedArchive, client: Client, markers: Path
) -> None:
    pytest.importorskip("psycopg")
    from tests.service.server import postgres_available, start_postgres

    if not postgres_available():
        pytest.skip("PostgreSQL server binaries are not installed")
    server = start_postgres()
    try:
        store = TaskStore(make_engine(server.create_database("archive")))
        first = run_archive(str(archive.root), client, store, _options(limit=60))
        assert first.counters.answered == 60
        second = run_archive(str(archive.root), client, store, _options())
        assert second.counters.skipped_done == 60
        _check_complete(archive, store, markers)
        assert set(marker_counts(markers).values()) == {1}
        store.engine.dispose()
    finally:
        server.stop()
