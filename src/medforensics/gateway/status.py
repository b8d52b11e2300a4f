"""What is in the spool: counts, series waiting, quarantine, last errors (``gateway status``).

Reads the index only (SQLite in WAL mode lets it run next to a live gateway) plus the size of the
spool folder; it never changes anything.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from medforensics.gateway import tables as t
from medforensics.gateway.durable import safe_name
from medforensics.gateway.tables import GatewayBatch, GatewayEvent, GatewayInstance


@dataclass
class PendingSeries:
    batch: int
    series_instance_uid: str
    state: str
    instances: int
    outcome: str | None
    last_error: str | None


@dataclass
class GatewayStatus:
    """A snapshot of the spool.

    Attributes:
        received: instances acknowledged since the spool was created.
        forwarded: received instances the destination has confirmed.
        quarantined: received instances in the quarantine folder.
        rejected: instances the destination refused for good (kept in quarantine).
        results_forwarded: our SR / SC / PDF objects the destination has confirmed.
        signed: received instances the gateway signed on ingest.
        verified: instances whose signatures were all intact when checked before forwarding
            (``untrusted`` ones included).
        broken: instances with a broken signature found on the way out (their series were
            quarantined).
        untrusted: verified, but a signer's certificate is untrusted, expired or revoked.
        unsigned: checked on the way out and found without any signature.
        series_done: batches finished (forwarded and/or quarantined).
        pending_series: batches not finished yet, by state (receiving, complete, analysed).
        failed_series: unfinished batches whose last attempt failed (e.g. destination down).
        outcomes: finished batches by outcome.
        spool_bytes: bytes under the spool folder.
        pending: the unfinished batches, oldest first (at most 50).
        quarantine: the most recently quarantined series, newest first (at most 20).
        last_errors: the most recent errors, newest first.
    """

    spool_dir: str
    received: int = 0
    forwarded: int = 0
    quarantined: int = 0
    rejected: int = 0
    results_forwarded: int = 0
    signed: int = 0
    verified: int = 0
    broken: int = 0
    untrusted: int = 0
    unsigned: int = 0
    series_done: int = 0
    pending_series: dict[str, int] = field(default_factory=dict)
    failed_series: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    spool_bytes: int = 0
    pending: list[PendingSeries] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    last_errors: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _folder_size(root: Path) -> int:
    total = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            try:
                total += (Path(dirpath) / name).stat().st_size
            except OSError:
                continue
    return total


def read_status(engine: Engine, spool_dir: Path, *, errors: int = 10) -> GatewayStatus:
    """The spool's counts and recent errors."""
    status = GatewayStatus(spool_dir=str(spool_dir))
    images = GatewayInstance.role == t.IMAGE
    with engine.connect() as connection:

        def count(*conditions: Any) -> int:
            query = (
                select(func.count())
                .select_from(GatewayInstance)
                .join(GatewayBatch, GatewayBatch.id == GatewayInstance.batch_id)
                .where(*conditions)
            )
            return int(connection.execute(query).scalar_one())

        status.received = count(images)
        status.forwarded = count(images, GatewayInstance.state == t.FORWARDED)
        status.rejected = count(images, GatewayInstance.state == t.REJECTED)
        status.results_forwarded = count(
            GatewayInstance.role == t.RESULT, GatewayInstance.state == t.FORWARDED
        )
        status.quarantined = count(images, GatewayBatch.location == t.IN_QUARANTINE)
        status.signed = count(images, GatewayInstance.signature_uid.is_not(None))
        checked = GatewayInstance.verification
        status.verified = count(images, checked.in_([t.VALID, t.UNTRUSTED]))
        status.broken = count(images, checked == t.BROKEN)
        status.untrusted = count(images, checked == t.UNTRUSTED)
        status.unsigned = count(images, checked == t.UNSIGNED)
        for state, n in connection.execute(
            select(GatewayBatch.state, func.count()).group_by(GatewayBatch.state)
        ):
            if state == t.DONE:
                status.series_done = int(n)
            else:
                status.pending_series[str(state)] = int(n)
        for outcome, n in connection.execute(
            select(GatewayBatch.outcome, func.count())
            .where(GatewayBatch.state == t.DONE)
            .group_by(GatewayBatch.outcome)
        ):
            status.outcomes[str(outcome)] = int(n)
        status.failed_series = int(
            connection.execute(
                select(func.count())
                .select_from(GatewayBatch)
                .where(GatewayBatch.state != t.DONE, GatewayBatch.last_error.is_not(None))
            ).scalar_one()
        )
        per_batch = (
            select(GatewayInstance.batch_id, func.count().label("n"))
            .where(images)
            .group_by(GatewayInstance.batch_id)
            .subquery()
        )
        for row in connection.execute(
            select(
                GatewayBatch.id,
                GatewayBatch.series_uid,
                GatewayBatch.state,
                per_batch.c.n,
                GatewayBatch.outcome,
                GatewayBatch.last_error,
            )
            .outerjoin(per_batch, per_batch.c.batch_id == GatewayBatch.id)
            .where(GatewayBatch.state != t.DONE)
            .order_by(GatewayBatch.id)
            .limit(50)
        ):
            status.pending.append(
                PendingSeries(int(row[0]), row[1], row[2], int(row[3] or 0), row[4], row[5])
            )
        for row in connection.execute(
            select(
                GatewayBatch.id,
                GatewayBatch.study_uid,
                GatewayBatch.series_uid,
                GatewayBatch.outcome,
                GatewayBatch.score,
                GatewayBatch.done_at,
            )
            .where(GatewayBatch.location == t.IN_QUARANTINE)
            .order_by(GatewayBatch.id.desc())
            .limit(20)
        ):
            folder = (
                spool_dir / t.IN_QUARANTINE / safe_name(row[1]) / safe_name(row[2]) / str(row[0])
            )
            status.quarantine.append(
                {
                    "batch": int(row[0]),
                    "series_instance_uid": row[2],
                    "outcome": row[3],
                    "score": row[4],
                    "path": str(folder),
                }
            )
        for event in connection.execute(
            select(GatewayEvent).order_by(GatewayEvent.id.desc()).limit(errors)
        ).mappings():
            status.last_errors.append(
                {
                    "time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event["at"])),
                    "level": event["level"],
                    "batch": event["batch_id"],
                    "message": event["message"],
                }
            )
    status.spool_bytes = _folder_size(spool_dir)
    return status
