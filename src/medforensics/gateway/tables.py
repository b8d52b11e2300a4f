"""The gateway's index tables: batches (a series as received), instances, and an error log.

The files in the spool are the truth about what was acknowledged; these tables say where each
instance is in its life (spooled, then forwarded or rejected; a batch is quarantined as a whole)
so that a restart resumes exactly where the gateway stopped and never forwards the same instance
twice on purpose.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
)
from sqlalchemy.orm import Mapped, mapped_column

from medforensics.db import Base

#: batch states, in order
RECEIVING, COMPLETE, ANALYSED, DONE = "receiving", "complete", "analysed", "done"
#: where a batch's received files are
IN_INCOMING, IN_QUARANTINE, GONE = "incoming", "quarantine", "gone"
#: instance states (quarantine is where a batch is, not a state of its instances)
SPOOLED, FORWARDED, REJECTED = "spooled", "forwarded", "rejected"
#: instance roles: what a modality sent, or a result object we made
IMAGE, RESULT = "image", "result"
#: what the check before forwarding found: signatures intact (``untrusted``: intact, but a
#: certificate problem), no signature at all, or a signature broken (the file changed)
VALID, UNTRUSTED, UNSIGNED, BROKEN = "valid", "untrusted", "unsigned", "broken"


class GatewayBatch(Base):
    """The instances of one series received in one go (a late instance starts a new batch)."""

    __tablename__ = "gateway_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_uid: Mapped[str] = mapped_column(String(128))
    series_uid: Mapped[str] = mapped_column(String(128))
    calling_ae: Mapped[str] = mapped_column(String(16), default="")
    state: Mapped[str] = mapped_column(String(16), default=RECEIVING)
    location: Mapped[str] = mapped_column(String(16), default=IN_INCOMING)
    first_received_at: Mapped[float] = mapped_column(Float)
    last_received_at: Mapped[float] = mapped_column(Float)
    analysed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    done_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: comma-separated actions decided when the outcome was known
    actions: Mapped[str] = mapped_column(String(64), default="")
    #: scan-contract results (JSON list) and notes
    results_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_gateway_batches_state", "state"),)


class GatewayInstance(Base):
    """One DICOM instance in the spool: received (``image``) or made by us (``result``)."""

    __tablename__ = "gateway_instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("gateway_batches.id", ondelete="CASCADE"))
    sop_uid: Mapped[str] = mapped_column(String(128))
    sop_class_uid: Mapped[str] = mapped_column(String(128), default="")
    role: Mapped[str] = mapped_column(String(8), default=IMAGE)
    #: file name inside the batch folder (images) or the results folder (results)
    file_name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer, default=0)
    #: SHA-256 of the file as received: a resend of the same bytes is recognised
    sha256: Mapped[str] = mapped_column(String(64), default="")
    received_at: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), default=SPOOLED)
    forwarded_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Digital Signature UID of the signature the gateway added on ingest (None: not signed)
    signature_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: the last check of its signatures before it left the spool (VALID ... BROKEN)
    verification: Mapped[str | None] = mapped_column(String(16), nullable=True)

    __table_args__ = (
        UniqueConstraint("batch_id", "sop_uid", name="uq_gateway_instance"),
        Index("ix_gateway_instances_state", "state"),
        Index("ix_gateway_instances_sop", "sop_uid"),
    )


class GatewayEvent(Base):
    """Errors and warnings worth showing in ``medforensics gateway status``."""

    __tablename__ = "gateway_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(8))
    batch_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str] = mapped_column(Text)


#: the gateway's tables, for ``create_all(tables=...)`` on its own index database
GATEWAY_TABLES: list[Table] = [
    Base.metadata.tables[model.__tablename__]
    for model in (GatewayBatch, GatewayInstance, GatewayEvent)
]


def add_missing_columns(engine: Engine) -> None:
    """Add columns introduced since an index database was created (all of them nullable), so
    a spool made by an older gateway keeps working; ``create_all`` only creates new tables."""
    inspector = inspect(engine)
    for table in GATEWAY_TABLES:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [column for column in table.columns if column.name not in present]
        if not missing:
            continue
        with engine.begin() as connection:
            for column in missing:
                kind = column.type.compile(dialect=engine.dialect)
                connection.exec_driver_sql(
                    f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'
                )
