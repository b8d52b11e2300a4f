"""The archive scanner's tables: one row per task (series or file) and detector, one per run.

The client is the only writer: workers send outcomes back and ``TaskStore.record`` writes them.
A row becomes ``done`` once; an answer that arrives for a row already done (two runs racing on
one archive, or a result Dask recomputed after losing a worker) is counted in ``completions`` but
never overwrites the recorded result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from medforensics.archive.tasks import DONE, FAILED, QUEUED, SeriesTask
from medforensics.archive.worker import TaskOutcome
from medforensics.db import Base

#: worst first: a task's verdict is the worst verdict among its results
VERDICT_RANK = {"manipulated": 3, "inconclusive": 2, "authentic": 1}


class ArchiveTask(Base):
    """One series (or stand-alone file) of an archive, as analysed by one detector."""

    __tablename__ = "archive_tasks"
    __table_args__ = (
        UniqueConstraint("task_key", "detector", name="uq_archive_task_key_detector"),
        Index("ix_archive_tasks_seen", "seen_run"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_key: Mapped[str] = mapped_column(String(64))
    detector: Mapped[str] = mapped_column(String(100))
    root: Mapped[str] = mapped_column(Text)
    location: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
    files: Mapped[int] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    modality: Mapped[str | None] = mapped_column(String(16), nullable=True)
    study_uid: Mapped[str | None] = mapped_column(String(128), nullable=True)
    series_uid: Mapped[str | None] = mapped_column(String(128), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    verdict: Mapped[str | None] = mapped_column(String(16), nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    findings: Mapped[int] = mapped_column(Integer, default=0)
    #: scan-contract results (JSON list, one per volume or error)
    results: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: how many runs handed it to the cluster, and how many answers reached the database
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    completions: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    load_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    detect_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    cpu_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    queued_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: the run that recorded the answer, and the last run whose walk found the task
    run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    seen_run: Mapped[str | None] = mapped_column(String(32), nullable=True)


class ArchiveRun(Base):
    """One ``scan-archive`` invocation and what it did."""

    __tablename__ = "archive_runs"

    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    root: Mapped[str] = mapped_column(Text)
    detector: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    options: Mapped[str] = mapped_column(Text, default="{}")
    counters: Mapped[str] = mapped_column(Text, default="{}")


def _worst(values: Iterable[str | None]) -> str | None:
    ranked = [v for v in values if v in VERDICT_RANK]
    return max(ranked, key=VERDICT_RANK.__getitem__) if ranked else None


class TaskStore:
    """Reads and writes the archive tables behind ``engine`` (created by ``make_engine``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        Base.metadata.create_all(
            engine,
            tables=[ArchiveTask.__table__, ArchiveRun.__table__],  # type: ignore[list-item]
        )

    # runs ---------------------------------------------------------------------------------
    def start_run(self, run_id: str, root: str, detector: str, options: Mapping[str, Any]) -> None:
        with Session(self.engine) as session, session.begin():
            session.add(
                ArchiveRun(
                    run_id=run_id,
                    root=root,
                    detector=detector,
                    status="running",
                    started_at=time.time(),
                    options=json.dumps(dict(options), default=str),
                    counters="{}",
                )
            )

    def finish_run(self, run_id: str, status: str, counters: Mapping[str, Any]) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(ArchiveRun)
                .where(ArchiveRun.run_id == run_id)
                .values(
                    status=status,
                    finished_at=time.time(),
                    counters=json.dumps(dict(counters), default=str),
                )
            )

    def run(self, run_id: str) -> ArchiveRun | None:
        with Session(self.engine) as session:
            return session.get(ArchiveRun, run_id)

    # tasks --------------------------------------------------------------------------------
    def statuses(self, keys: Sequence[str], detector: str) -> dict[str, str]:
        """``task key -> status`` for the keys already in the database."""
        if not keys:
            return {}
        with Session(self.engine) as session:
            rows = session.execute(
                select(ArchiveTask.task_key, ArchiveTask.status).where(
                    ArchiveTask.detector == detector, ArchiveTask.task_key.in_(list(keys))
                )
            )
            return {key: status for key, status in rows}

    def mark_seen(self, keys: Sequence[str], detector: str, run_id: str) -> None:
        """Note that this run's walk found these (already recorded) tasks."""
        if not keys:
            return
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(ArchiveTask)
                .where(ArchiveTask.detector == detector, ArchiveTask.task_key.in_(list(keys)))
                .values(seen_run=run_id)
            )

    def queue(self, tasks: Sequence[SeriesTask], detector: str, run_id: str) -> None:
        """Record that these tasks are handed to the cluster (new rows, or another attempt)."""
        for attempt in range(2):
            try:
                self._queue_once(tasks, detector, run_id)
                return
            except IntegrityError:  # another run inserted one of them meanwhile
                if attempt:
                    raise

    def _queue_once(self, tasks: Sequence[SeriesTask], detector: str, run_id: str) -> None:
        now = time.time()
        with Session(self.engine) as session, session.begin():
            existing = {
                row.task_key: row
                for row in session.scalars(
                    select(ArchiveTask).where(
                        ArchiveTask.detector == detector,
                        ArchiveTask.task_key.in_([t.key for t in tasks]),
                    )
                )
            }
            for task in tasks:
                row = existing.get(task.key)
                if row is None:
                    row = ArchiveTask(task_key=task.key, detector=detector, attempts=0)
                    row.completions = 0
                    row.findings = 0
                    session.add(row)
                    existing[task.key] = row
                row.root = task.root
                row.location = task.location
                row.kind = task.kind
                row.files = task.n_files
                row.bytes = task.n_bytes
                row.modality = task.modality
                row.study_uid = task.study_uid
                row.series_uid = task.series_uid
                if row.status != DONE:
                    row.status = QUEUED
                    row.attempts = (row.attempts or 0) + 1
                    row.queued_at = now
                row.seen_run = run_id

    def record(self, outcomes: Sequence[TaskOutcome], detector: str, run_id: str) -> list[bool]:
        """Write the answers; for each, True if recorded, False if the task was already done."""
        recorded: list[bool] = []
        now = time.time()
        with Session(self.engine) as session, session.begin():
            for outcome in outcomes:
                which = (ArchiveTask.task_key == outcome.key, ArchiveTask.detector == detector)
                session.execute(
                    update(ArchiveTask)
                    .where(*which)
                    .values(completions=ArchiveTask.completions + 1)
                )
                results = outcome.results
                scores = [r["score"] for r in results if r.get("score") is not None]
                first = results[0] if results else {}
                changed = session.execute(
                    update(ArchiveTask)
                    .where(*which, ArchiveTask.status != DONE)
                    .values(
                        status=DONE if outcome.status == DONE else FAILED,
                        verdict=_worst(r.get("verdict") for r in results),
                        score=max(scores) if scores else None,
                        findings=sum(len(r.get("findings") or []) for r in results),
                        results=json.dumps(results, allow_nan=False, default=str),
                        error=outcome.error,
                        worker=outcome.worker,
                        load_s=outcome.load_s,
                        detect_s=outcome.detect_s,
                        cpu_s=outcome.cpu_s,
                        finished_at=now,
                        run_id=run_id,
                        study_uid=first.get("study_instance_uid") or ArchiveTask.study_uid,
                        series_uid=first.get("series_instance_uid") or ArchiveTask.series_uid,
                        modality=first.get("modality") or ArchiveTask.modality,
                    )
                )
                recorded.append(bool(getattr(changed, "rowcount", 0)))
        return recorded

    def rows(
        self, detector: str, seen_run: str | None = None, chunk: int = 1000
    ) -> Iterator[ArchiveTask]:
        """Every task row of ``detector`` (found by the walk of ``seen_run`` if given), in
        chunks, so exporting a million rows never holds them all."""
        last = 0
        while True:
            query = (
                select(ArchiveTask)
                .where(ArchiveTask.detector == detector, ArchiveTask.id > last)
                .order_by(ArchiveTask.id)
                .limit(chunk)
            )
            if seen_run is not None:
                query = query.where(ArchiveTask.seen_run == seen_run)
            with Session(self.engine) as session:
                batch = list(session.scalars(query))
            if not batch:
                return
            yield from batch
            last = batch[-1].id
