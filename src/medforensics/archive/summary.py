"""The batch summary: counts by verdict, the most suspicious studies and series, the errors;
and the per-series table (Parquet, or CSV) exported from the database.

Everything is computed from the database rows the run's walk found (``seen_run``), so a resumed
run summarises the whole archive, not only what it analysed itself.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from medforensics.__about__ import __version__
from medforensics.archive.runner import RunReport
from medforensics.archive.store import ArchiveTask, TaskStore
from medforensics.archive.tasks import DONE, FAILED, QUEUED
from medforensics.scan import EXIT_AUTHENTIC, EXIT_ERROR, EXIT_FLAGGED, TOOL_NAME

SUMMARY_FORMAT = "medforensics-archive-summary/1"
TOP_SHOWN = 20
ERRORS_SHOWN = 50
FLAGGED = ("manipulated", "inconclusive")

TableFormat = Literal["parquet", "csv"]

#: the per-series table's columns, in order
TABLE_COLUMNS = (
    "task_key", "location", "kind", "modality", "study_uid", "series_uid", "files", "bytes",
    "status", "verdict", "score", "findings", "error", "attempts", "worker", "load_s",
    "detect_s", "cpu_s", "finished_at", "run_id",
)  # fmt: skip


@dataclass
class BatchSummary:
    """What a run of ``scan-archive`` found, for people (HTML, terminal) and machines (JSON)."""

    run_id: str
    root: str
    detector: str
    status: str
    started: str
    elapsed_s: float
    workers: int
    model: dict[str, Any]
    this_run: dict[str, Any]
    series_per_s: float
    tasks: dict[str, int]
    verdicts: dict[str, int]
    #: studies with a flagged series, and flagged series, highest score first
    top_studies: list[dict[str, Any]] = field(default_factory=list)
    top_series: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    errors_total: int = 0
    skipped_files: list[dict[str, str]] = field(default_factory=list)
    walk_problems: list[dict[str, str]] = field(default_factory=list)
    exit_code: int = EXIT_AUTHENTIC

    @property
    def flagged(self) -> int:
        return sum(self.verdicts.get(v, 0) for v in FLAGGED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SUMMARY_FORMAT,
            "tool": TOOL_NAME,
            "version": __version__,
            **asdict(self),
        }


def _exit_code(tasks: dict[str, int], verdicts: dict[str, int]) -> int:
    """2 if a series could not be analysed (or is still waiting for an answer), else 1 if any
    was flagged, else 0: the contract of ``medforensics scan``."""
    if tasks.get(FAILED, 0) or tasks.get(QUEUED, 0):
        return EXIT_ERROR
    flagged = sum(n for verdict, n in verdicts.items() if verdict != "authentic")
    return EXIT_FLAGGED if flagged else EXIT_AUTHENTIC


def summarise(store: TaskStore, report: RunReport) -> BatchSummary:
    """Summarise the tasks this run's walk found, from the database."""
    seen = (ArchiveTask.detector == report.detector, ArchiveTask.seen_run == report.run_id)
    flagged = case((ArchiveTask.verdict.in_(FLAGGED), 1), else_=0)
    with Session(store.engine) as session:
        tasks = {DONE: 0, FAILED: 0, QUEUED: 0}
        for status, count in session.execute(
            select(ArchiveTask.status, func.count()).where(*seen).group_by(ArchiveTask.status)
        ):
            tasks[status] = count
        verdicts = {"authentic": 0, "inconclusive": 0, "manipulated": 0}
        for verdict, count in session.execute(
            select(ArchiveTask.verdict, func.count())
            .where(*seen, ArchiveTask.status == DONE)
            .group_by(ArchiveTask.verdict)
        ):
            verdicts[str(verdict)] = count
        studies = session.execute(
            select(
                ArchiveTask.study_uid,
                func.count(),
                func.sum(flagged),
                func.max(ArchiveTask.score),
                func.min(ArchiveTask.location),
            )
            .where(*seen, ArchiveTask.status == DONE)
            .group_by(ArchiveTask.study_uid)
            .having(func.sum(flagged) > 0)
            .order_by(func.max(ArchiveTask.score).desc(), func.min(ArchiveTask.location))
            .limit(TOP_SHOWN)
        )
        top_studies = [
            {
                "study_uid": uid,
                "series": count,
                "flagged_series": int(n_flagged or 0),
                "max_score": score,
                "example": location,
            }
            for uid, count, n_flagged, score, location in studies
        ]
        top_series = [
            {
                "location": row.location,
                "study_uid": row.study_uid,
                "series_uid": row.series_uid,
                "modality": row.modality,
                "files": row.files,
                "score": row.score,
                "verdict": row.verdict,
                "findings": row.findings,
            }
            for row in session.scalars(
                select(ArchiveTask)
                .where(*seen, ArchiveTask.status == DONE, ArchiveTask.verdict.in_(FLAGGED))
                .order_by(ArchiveTask.score.desc(), ArchiveTask.location)
                .limit(TOP_SHOWN)
            )
        ]
        errors = [
            {"location": row.location, "kind": row.kind, "error": row.error or ""}
            for row in session.scalars(
                select(ArchiveTask)
                .where(*seen, ArchiveTask.status == FAILED)
                .order_by(ArchiveTask.location)
                .limit(ERRORS_SHOWN)
            )
        ]
    counters = report.counters
    return BatchSummary(
        run_id=report.run_id,
        root=report.root,
        detector=report.detector,
        status=report.status,
        started=dt.datetime.fromtimestamp(report.started, dt.UTC).isoformat(timespec="seconds"),
        elapsed_s=round(report.elapsed_s, 3),
        workers=report.workers,
        model=report.model,
        this_run=counters.to_dict(),
        series_per_s=round(counters.answered / report.elapsed_s, 4) if report.elapsed_s else 0.0,
        tasks=tasks,
        verdicts=verdicts,
        top_studies=top_studies,
        top_series=top_series,
        errors=errors,
        errors_total=tasks[FAILED],
        skipped_files=[{"path": s.path, "reason": s.reason} for s in report.skipped_examples],
        walk_problems=[{"path": p.path, "message": p.message} for p in report.walk_problems],
        exit_code=_exit_code(tasks, verdicts),
    )


def _records(store: TaskStore, report: RunReport) -> Iterator[dict[str, Any]]:
    for row in store.rows(report.detector, seen_run=report.run_id):
        yield {column: getattr(row, column) for column in TABLE_COLUMNS}


def default_table_format() -> TableFormat:
    """Parquet when pyarrow is installed, else CSV."""
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return "csv"
    return "parquet"


def write_table(
    store: TaskStore, report: RunReport, out_dir: Path, fmt: TableFormat | None = None
) -> Path:
    """Export one row per task found by the run to ``out_dir/series.parquet`` (or ``.csv``).

    Rows stream from the database in chunks into a temporary file that replaces the previous
    table only when complete: an interrupted export leaves the last good table in place.
    """
    fmt = fmt or default_table_format()
    target = out_dir / f"series.{fmt}"
    out_dir.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=out_dir)
    os.close(handle)
    try:
        if fmt == "parquet":
            _write_parquet(_records(store, report), Path(tmp_name))
        else:
            _write_csv(_records(store, report), Path(tmp_name))
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def _write_csv(records: Iterator[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(TABLE_COLUMNS))
        writer.writeheader()
        for record in records:
            writer.writerow(record)


def _write_parquet(records: Iterator[dict[str, Any]], path: Path, group: int = 10_000) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {
        "files": pa.int64(), "bytes": pa.int64(), "findings": pa.int64(), "attempts": pa.int64(),
        "score": pa.float64(), "load_s": pa.float64(), "detect_s": pa.float64(),
        "cpu_s": pa.float64(), "finished_at": pa.float64(),
    }  # fmt: skip
    schema = pa.schema([(c, types.get(c, pa.string())) for c in TABLE_COLUMNS])
    with pq.ParquetWriter(path, schema) as writer:
        rows: list[dict[str, Any]] = []
        for record in records:
            rows.append(record)
            if len(rows) >= group:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                rows = []
        writer.write_table(pa.Table.from_pylist(rows, schema=schema))


@dataclass(frozen=True)
class BatchOutputs:
    """The files a run leaves in its results folder."""

    summary_json: Path
    report_html: Path
    table: Path


def write_outputs(
    store: TaskStore, report: RunReport, out_dir: Path, fmt: TableFormat | None = None
) -> tuple[BatchSummary, BatchOutputs]:
    """Summarise the run and write ``summary.json``, ``report.html`` and the series table."""
    from medforensics.archive.html import render_batch_html
    from medforensics.report.build import write_atomic

    summary = summarise(store, report)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(summary.to_dict(), indent=2, allow_nan=False, default=str) + "\n"
    json_path = write_atomic(out_dir / "summary.json", text.encode("utf-8"))
    html_path = write_atomic(out_dir / "report.html", render_batch_html(summary).encode("utf-8"))
    table = write_table(store, report, out_dir, fmt)
    return summary, BatchOutputs(json_path, html_path, table)
