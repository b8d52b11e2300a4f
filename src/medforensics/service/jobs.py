"""The job queue, kept in the database: submit, claim, complete, fail, recover after a restart.

Guarantees, all from conditional UPDATEs (no in-memory state needs to survive a crash):

* a job is claimed by exactly one worker: ``queued → running`` only ``WHERE status='queued'``
  and the attempt counter it read, and the attempt number goes up by one;
* a job's completion is recorded at most once: ``running → done|failed`` only ``WHERE
  status='running' AND attempts=<the attempt that ran>``; a stale worker (from before a restart
  or a timeout) finds no row to update and its answer is dropped;
* nothing is lost: on start-up every job left ``running`` by a dead server goes back to
  ``queued`` (or ``failed`` once it has been started ``max_attempts`` times).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from medforensics.db import session_factory
from medforensics.service.models import (
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    Analysis,
    AnalysisInput,
    utcnow,
)


@dataclass(frozen=True)
class InputFile:
    """An uploaded file as the queue knows it (its bytes are in the blob store)."""

    name: str
    sha256: str
    size: int
    format: str


@dataclass(frozen=True)
class ClaimedJob:
    """A job a worker now owns, for the attempt ``attempt``."""

    id: str
    attempt: int
    tenant: str
    key_id: str
    detector: str
    modality: str | None
    inputs: tuple[InputFile, ...]


@dataclass(frozen=True)
class Recovery:
    """What start-up recovery did."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class QueueFull(Exception):
    """The queue holds ``queued`` jobs at or above its limit."""

    def __init__(self, queued: int, limit: int) -> None:
        super().__init__(f"{queued} analyses are waiting, the limit is {limit}")
        self.queued = queued
        self.limit = limit


def new_analysis_id() -> str:
    return str(uuid.uuid4())


class JobStore:
    """All reads and writes of analyses; safe to share between threads."""

    def __init__(self, engine: Engine, max_attempts: int = 3) -> None:
        self.engine = engine
        self.max_attempts = max_attempts
        self._sessions = session_factory(engine)

    def session(self) -> Session:
        return self._sessions()

    # -- submission -----------------------------------------------------------------------------

    def queued_count(self) -> int:
        with self.session() as session:
            return int(session.scalar(select(func.count()).where(Analysis.status == QUEUED)) or 0)

    def submit(
        self,
        *,
        tenant: str,
        key_id: str,
        detector: str,
        modality: str | None,
        inputs: Sequence[InputFile],
        queue_limit: int,
        analysis_id: str | None = None,
        seconds_per_mib: float = 0.0,
    ) -> Analysis:
        """Insert a queued analysis and its inputs in one transaction.

        Jobs are taken in order of ``priority_at``: the submission time plus
        ``seconds_per_mib`` per MiB uploaded (0 gives first in, first out).

        Raises:
            QueueFull: if ``queue_limit`` jobs are already queued.
        """
        # counted before the write transaction (a SQLite read lock must not be upgraded under
        # concurrent writers); concurrent submissions may overshoot the limit by a few
        queued = self.queued_count()
        if queued >= queue_limit:
            raise QueueFull(queued, queue_limit)
        with self.session() as session, session.begin():
            now = utcnow()
            total_bytes = sum(item.size for item in inputs)
            analysis = Analysis(
                id=analysis_id or new_analysis_id(),
                tenant=tenant,
                key_id=key_id,
                status=QUEUED,
                attempts=0,
                completions=0,
                detector=detector,
                modality=modality,
                total_bytes=total_bytes,
                created_at=now,
                priority_at=now + timedelta(seconds=seconds_per_mib * total_bytes / 2**20),
                updated_at=now,
            )
            session.add(analysis)
            session.flush()
            for position, item in enumerate(inputs):
                session.add(
                    AnalysisInput(
                        analysis_id=analysis.id,
                        position=position,
                        name=item.name,
                        sha256=item.sha256,
                        size=item.size,
                        format=item.format,
                    )
                )
        return analysis

    # -- the worker side ------------------------------------------------------------------------

    def claim(self, worker: str) -> ClaimedJob | None:
        """Take the queued job first in ``priority_at`` order, or None when there is none.

        One UPDATE ... RETURNING moves the row, so two workers never get the same job; on
        PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets them take different rows at once.
        """
        oldest = (
            select(Analysis.id)
            .where(Analysis.status == QUEUED)
            .order_by(Analysis.priority_at, Analysis.created_at, Analysis.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        for _ in range(8):  # another worker may win the race for the same row
            now = utcnow()
            with self.session() as session, session.begin():
                row = session.execute(
                    update(Analysis)
                    .where(Analysis.id == oldest, Analysis.status == QUEUED)
                    .values(
                        status=RUNNING,
                        attempts=Analysis.attempts + 1,
                        started_at=now,
                        updated_at=now,
                        worker=worker,
                    )
                    .returning(
                        Analysis.id,
                        Analysis.attempts,
                        Analysis.tenant,
                        Analysis.key_id,
                        Analysis.detector,
                        Analysis.modality,
                    )
                ).first()
                if row is None:
                    if self.queued_count() == 0:
                        return None
                    continue
                inputs = session.scalars(
                    select(AnalysisInput)
                    .where(AnalysisInput.analysis_id == row.id)
                    .order_by(AnalysisInput.position)
                ).all()
                return ClaimedJob(
                    id=row.id,
                    attempt=int(row.attempts),
                    tenant=row.tenant,
                    key_id=row.key_id,
                    detector=row.detector,
                    modality=row.modality,
                    inputs=tuple(
                        InputFile(item.name, item.sha256, item.size, item.format) for item in inputs
                    ),
                )
        return None

    def complete(
        self,
        job_id: str,
        attempt: int,
        *,
        report: Mapping[str, Any],
        artefacts: Sequence[Mapping[str, Any]],
        verdict: str | None,
        score: float | None,
    ) -> bool:
        """Record a finished job; False when this attempt no longer owns it (nothing written)."""
        return self._finish(
            job_id,
            attempt,
            status=DONE,
            result_json=json.dumps(report, separators=(",", ":")),
            artefacts_json=json.dumps(list(artefacts), separators=(",", ":")),
            verdict=verdict,
            score=score,
            error=None,
        )

    def fail(self, job_id: str, attempt: int, error: str, *, retry: bool = False) -> str | None:
        """Fail this attempt: back to ``queued`` when ``retry`` and attempts remain.

        Returns:
            The status written (``queued`` or ``failed``), None when this attempt no longer
            owns the job.
        """
        if retry and attempt < self.max_attempts:
            with self.session() as session, session.begin():
                moved = session.execute(
                    update(Analysis)
                    .where(
                        Analysis.id == job_id,
                        Analysis.status == RUNNING,
                        Analysis.attempts == attempt,
                    )
                    .values(status=QUEUED, updated_at=utcnow(), error=error, worker=None)
                )
                return QUEUED if _rowcount(moved) == 1 else None
        written = self._finish(
            job_id,
            attempt,
            status=FAILED,
            result_json=None,
            artefacts_json=None,
            verdict=None,
            score=None,
            error=error,
        )
        return FAILED if written else None

    def release(self, job_id: str, attempt: int) -> bool:
        """Give a job back to the queue on a clean shutdown (the attempt still counts)."""
        with self.session() as session, session.begin():
            moved = session.execute(
                update(Analysis)
                .where(
                    Analysis.id == job_id, Analysis.status == RUNNING, Analysis.attempts == attempt
                )
                .values(status=QUEUED, updated_at=utcnow(), worker=None)
            )
            return _rowcount(moved) == 1

    def _finish(self, job_id: str, attempt: int, *, status: str, **values: Any) -> bool:
        now = utcnow()
        with self.session() as session, session.begin():
            written = session.execute(
                update(Analysis)
                .where(
                    Analysis.id == job_id,
                    Analysis.status == RUNNING,
                    Analysis.attempts == attempt,
                )
                .values(
                    status=status,
                    finished_at=now,
                    updated_at=now,
                    completions=Analysis.completions + 1,
                    **values,
                )
            )
            return _rowcount(written) == 1

    def recover(self) -> Recovery:
        """Re-queue jobs a dead server left ``running``; fail those out of attempts."""
        now = utcnow()
        with self.session() as session, session.begin():
            stranded = session.execute(
                select(Analysis.id, Analysis.attempts).where(Analysis.status == RUNNING)
            ).all()
            requeued: list[str] = []
            failed: list[str] = []
            for row in stranded:
                out_of_attempts = row.attempts >= self.max_attempts
                values: dict[str, Any] = (
                    {
                        "status": FAILED,
                        "finished_at": now,
                        "completions": Analysis.completions + 1,
                        "error": (
                            f"the analysis was interrupted {row.attempts} times (server restarts "
                            "or worker crashes) and was given up; submit it again, and if it "
                            "keeps failing report it with the input's SHA-256"
                        ),
                    }
                    if out_of_attempts
                    else {"status": QUEUED, "worker": None}
                )
                moved = session.execute(
                    update(Analysis)
                    .where(
                        Analysis.id == row.id,
                        Analysis.status == RUNNING,
                        Analysis.attempts == row.attempts,
                    )
                    .values(updated_at=now, **values)
                )
                if _rowcount(moved) == 1:
                    (failed if out_of_attempts else requeued).append(row.id)
        return Recovery(requeued=requeued, failed=failed)

    # -- reading --------------------------------------------------------------------------------

    def get(self, analysis_id: str, tenant: str | None = None) -> Analysis | None:
        """The analysis, or None when it does not exist or belongs to another tenant."""
        with self.session() as session:
            analysis = session.get(Analysis, analysis_id)
            if analysis is None or (tenant is not None and analysis.tenant != tenant):
                return None
            return analysis

    def inputs(self, analysis_id: str) -> list[AnalysisInput]:
        with self.session() as session:
            return list(
                session.scalars(
                    select(AnalysisInput)
                    .where(AnalysisInput.analysis_id == analysis_id)
                    .order_by(AnalysisInput.position)
                ).all()
            )

    def list_for_tenant(
        self, tenant: str, *, limit: int, offset: int, status: str | None = None
    ) -> tuple[list[Analysis], int]:
        """A page of the tenant's analyses, newest first, and how many there are in all."""
        with self.session() as session:
            where = [Analysis.tenant == tenant]
            if status is not None:
                where.append(Analysis.status == status)
            total = int(session.scalar(select(func.count()).where(*where)) or 0)
            page = session.scalars(
                select(Analysis)
                .where(*where)
                .order_by(Analysis.created_at.desc(), Analysis.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return list(page), total

    def counts_by_status(self) -> dict[str, int]:
        with self.session() as session:
            rows = session.execute(
                select(Analysis.status, func.count()).group_by(Analysis.status)
            ).all()
            return {str(status): int(count) for status, count in rows}

    def counts_by_verdict(self) -> dict[str, int]:
        with self.session() as session:
            rows = session.execute(
                select(Analysis.verdict, func.count())
                .where(Analysis.status == DONE)
                .group_by(Analysis.verdict)
            ).all()
            return {str(verdict or "none"): int(count) for verdict, count in rows}

    def finished_before(self, cutoff: datetime) -> list[str]:
        """Finished, not yet purged analyses older than ``cutoff``."""
        with self.session() as session:
            return list(
                session.scalars(
                    select(Analysis.id).where(
                        Analysis.status.in_((DONE, FAILED)),
                        Analysis.finished_at < cutoff,
                        Analysis.purged_at.is_(None),
                    )
                ).all()
            )

    def mark_purged(self, analysis_ids: Sequence[str]) -> None:
        if not analysis_ids:
            return
        with self.session() as session, session.begin():
            session.execute(
                update(Analysis)
                .where(Analysis.id.in_(list(analysis_ids)))
                .values(purged_at=utcnow(), artefacts_json=None)
            )

    def hashes_in_use(self) -> set[str]:
        """Input digests of analyses not yet purged (their bytes must stay)."""
        with self.session() as session:
            return set(
                session.scalars(
                    select(AnalysisInput.sha256)
                    .join(Analysis, Analysis.id == AnalysisInput.analysis_id)
                    .where(Analysis.purged_at.is_(None))
                    .distinct()
                ).all()
            )

    def mean_run_seconds(self, last: int = 50) -> float | None:
        """Mean run time of the latest finished jobs, for Retry-After estimates."""
        with self.session() as session:
            rows = session.execute(
                select(Analysis.started_at, Analysis.finished_at)
                .where(Analysis.status == DONE, Analysis.started_at.is_not(None))
                .order_by(Analysis.finished_at.desc())
                .limit(last)
            ).all()
        spans = [
            (finished - started).total_seconds()
            for started, finished in rows
            if started is not None and finished is not None
        ]
        return sum(spans) / len(spans) if spans else None


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
