"""The service's tables: API keys, analyses (the job queue) and their inputs.

The ``service_analyses`` table is the queue's source of truth: a job's status only moves by
conditional UPDATEs (see ``medforensics.service.jobs``), so a restart or a second server never
records a job's completion twice.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from medforensics.db import Base

#: job states: ``queued`` → ``running`` → ``done`` | ``failed``; a restart re-queues ``running``
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
STATUSES = (QUEUED, RUNNING, DONE, FAILED)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time the service stores is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


class ApiKey(Base):
    """An API key: the secret is never stored, only its SHA-256."""

    __tablename__ = "service_api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(64), default="read write")
    rate_per_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())


class Analysis(Base):
    """One submission and its job: status, attempts, timestamps, result."""

    __tablename__ = "service_analyses"
    __table_args__ = (
        Index("ix_service_analyses_status_priority", "status", "priority_at"),
        Index("ix_service_analyses_tenant_created", "tenant", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    #: times a worker started the job; completion is recorded only for the latest attempt
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: times a completion was recorded: 0 or 1 by construction (kept to let tests prove it)
    completions: Mapped[int] = mapped_column(Integer, default=0)
    detector: Mapped[str] = mapped_column(String(64))
    modality: Mapped[str | None] = mapped_column(String(16), nullable=True)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: queue order: submission time plus a delay growing with the upload's size, so a radiograph
    #: does not wait behind a burst of large series but a large series is never starved
    priority_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(64), nullable=True)
    verdict: Mapped[str | None] = mapped_column(String(16), nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: the scan contract's JSON object, once done
    result_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: per result index, the artefact files written (paths relative to the data directory)
    artefacts_json: Mapped[str | None] = mapped_column(Text, nullable=True)


class AnalysisInput(Base):
    """One uploaded file of an analysis; its bytes live in the content-addressed store."""

    __tablename__ = "service_analysis_inputs"

    analysis_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("service_analyses.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(16))
