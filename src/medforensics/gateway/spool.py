"""The durable spool: received instances on disk, indexed in a database, recoverable after a crash.

Layout under the spool folder::

    tmp/                                       files being received (never acknowledged)
    incoming/<study>/<series>/<batch>/<sop>.dcm acknowledged, waiting for analysis and dispatch
    results/<batch>/                            our reports and SR / SC / PDF for that batch
    quarantine/<study>/<series>/<batch>/        suspicious series, with verdict.json and results/
    sent/<study>/<series>/<batch>/              forwarded instances, only with keep_forwarded
    gateway.db                                  the index (SQLite, unless db_url says otherwise)

An instance is acknowledged only after ``store`` returns: its bytes are fsynced in ``tmp/``, its
row is committed, and the atomic rename into ``incoming/`` is fsynced too. ``recover`` makes the
index agree with the files after a crash: rows whose file never arrived are dropped (they were
never acknowledged), files without a row are indexed (the crash fell between rename and reply).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, bindparam, delete, event, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from medforensics.gateway.recovery import Recovery

from medforensics.gateway import tables as t
from medforensics.gateway.durable import (
    fsync_dir,
    make_dirs,
    move_dir,
    publish,
    safe_name,
    write_atomic,
    write_new_file,
)
from medforensics.gateway.tables import GatewayBatch, GatewayEvent, GatewayInstance

LOGGER = logging.getLogger("medforensics.gateway.spool")

#: DIMSE C-STORE statuses the spool can answer with
STATUS_OUT_OF_RESOURCES = 0xA700

#: statements of the receive path, built once
_INSERT_INSTANCE = insert(GatewayInstance)
_ALREADY_HELD = (
    select(GatewayInstance.id)
    .join(GatewayBatch, GatewayBatch.id == GatewayInstance.batch_id)
    .where(
        GatewayInstance.sop_uid == bindparam("sop_uid"),
        GatewayInstance.sha256 == bindparam("sha256"),
        GatewayInstance.role == t.IMAGE,
        GatewayBatch.state != t.RECEIVING,
    )
    .limit(1)
)


class SpoolError(Exception):
    """An instance could not be stored safely; ``status`` is the C-STORE status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _OpenBatch:
    batch_id: int
    inflight: int = 0
    last: float = 0.0


@dataclass
class ResultObject:
    """A DICOM object we made for a batch, to forward with it."""

    file_name: str
    sop_uid: str
    sop_class_uid: str
    size: int


def open_engine(url: str) -> Engine:
    """The index database with the gateway tables created (and no one else's)."""
    from medforensics.db import Base, make_engine

    engine = make_engine(url, create=False)
    if url.startswith("sqlite:"):

        @event.listens_for(engine, "connect")
        def _synchronous_normal(connection: Any, _record: Any) -> None:
            # WAL + NORMAL survives a killed process (the OS holds the log); after a power cut
            # the last commits may be lost, which recover() repairs from the fsynced files
            cursor = connection.cursor()
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    Base.metadata.create_all(engine, tables=t.GATEWAY_TABLES)
    t.add_missing_columns(engine)
    return engine


class Spool:
    """Received instances on disk plus their index; safe to use from many threads."""

    def __init__(self, root: Path, engine: Engine, *, min_free_bytes: int = 0) -> None:
        self.root = root
        self.engine = engine
        self.min_free_bytes = min_free_bytes
        self.tmp = root / "tmp"
        self._lock = threading.Lock()
        # SQLite has one writer; its busy handler sleeps in growing steps while waiting, which
        # cost 8 concurrent associations ~25 ms an instance. A Python lock hands over at once.
        self._writer: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
        )
        self._open: dict[tuple[str, str], _OpenBatch] = {}
        self._sop_locks = tuple(threading.Lock() for _ in range(32))
        self._known_dirs: set[Path] = set()
        for folder in (self.tmp, root / t.IN_INCOMING, root / t.IN_QUARANTINE, root / "results"):
            make_dirs(folder)

    @classmethod
    def at(cls, root: Path, url: str | None = None, *, min_free_bytes: int = 0) -> Spool:
        make_dirs(root)
        engine = open_engine(url or f"sqlite:///{root / 'gateway.db'}")
        return cls(root, engine, min_free_bytes=min_free_bytes)

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (serialised in-process for SQLite)."""
        with self._writer, self.engine.begin() as connection:
            yield connection

    # -- receiving ---------------------------------------------------------------------------

    def store(
        self,
        data: bytes,
        *,
        sop_uid: str,
        sop_class_uid: str,
        study_uid: str,
        series_uid: str,
        calling_ae: str = "",
        received_sha256: str | None = None,
        signature_uid: str | None = None,
    ) -> Path | None:
        """Store one encoded instance (DICOM file format) durably; raises ``SpoolError``.

        When this returns the instance may be acknowledged: a crash from here on cannot lose it.
        Returns where it was stored, or None for a resend of an instance (same UID, same bytes)
        that an earlier batch already holds or has delivered: it is not spooled twice, so a
        modality retrying after a lost acknowledgement causes neither a second forward nor a
        lone-instance analysis.

        A signed instance is stored with the SHA-256 of the bytes as received
        (``received_sha256``: resends are recognised by those) and the UID of the signature
        the gateway added (``signature_uid``).
        """
        digest = received_sha256 or hashlib.sha256(data).hexdigest()
        self._check_space(len(data))
        temp = self.tmp / f"{uuid.uuid4().hex}.part"
        try:
            write_new_file(temp, data)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise SpoolError(STATUS_OUT_OF_RESOURCES, f"cannot write to the spool: {exc}") from exc
        now = time.time()
        try:
            entry = self._enter(study_uid, series_uid, calling_ae, now, sop_uid, digest)
        except SQLAlchemyError as exc:
            temp.unlink(missing_ok=True)
            raise SpoolError(STATUS_OUT_OF_RESOURCES, f"spool index unavailable: {exc}") from exc
        if entry is None:
            temp.unlink(missing_ok=True)
            return None
        try:
            folder = self._batch_path(t.IN_INCOMING, study_uid, series_uid, entry.batch_id)
            target = folder / f"{safe_name(sop_uid)}.dcm"
            # the same signed instance on two associations at once: row and file must come from
            # the same one (its signature UID is in both)
            same_sop = (
                self._sop_locks[hash(sop_uid) % len(self._sop_locks)]
                if signature_uid
                else contextlib.nullcontext()
            )
            with same_sop:
                created = self.add_instance(
                    entry.batch_id,
                    sop_uid,
                    sop_class_uid,
                    target.name,
                    now,
                    len(data),
                    digest,
                    signature_uid,
                )
                try:
                    if folder not in self._known_dirs:
                        make_dirs(folder)
                        self._known_dirs.add(folder)
                    publish(temp, target)
                except OSError:
                    if created:
                        self.drop_instance(entry.batch_id, sop_uid)
                    raise
        except (OSError, SQLAlchemyError) as exc:
            temp.unlink(missing_ok=True)
            raise SpoolError(STATUS_OUT_OF_RESOURCES, f"cannot store the instance: {exc}") from exc
        finally:
            self._leave(entry)
        return target

    def _already_held(self, sop_uid: str, digest: str) -> bool:
        """True when a closed batch holds (or delivered) exactly these bytes under this UID."""
        with self.engine.connect() as connection:
            found = connection.execute(_ALREADY_HELD, {"sop_uid": sop_uid, "sha256": digest})
            return found.first() is not None

    def _check_space(self, size: int) -> None:
        if self.min_free_bytes <= 0:
            return
        try:
            free = shutil.disk_usage(self.root).free
        except OSError:
            return
        if free - size < self.min_free_bytes:
            raise SpoolError(
                STATUS_OUT_OF_RESOURCES,
                f"spool almost full ({free} bytes free, {self.min_free_bytes} kept in "
                f"reserve): {self.root}",
            )

    def _enter(
        self,
        study_uid: str,
        series_uid: str,
        calling_ae: str,
        now: float,
        sop_uid: str,
        digest: str,
    ) -> _OpenBatch | None:
        """The open batch the instance joins (created if needed), or None for a resend that a
        closed batch already holds. Under the lock, so a batch cannot close in between."""
        key = (study_uid, series_uid)
        with self._lock:
            if self._already_held(sop_uid, digest):
                return None
            entry = self._open.get(key)
            if entry is None:
                batch_id = self.create_batch(study_uid, series_uid, calling_ae, now)
                entry = self._open[key] = _OpenBatch(batch_id)
            entry.inflight += 1
            entry.last = now
            return entry

    def create_batch(
        self,
        study_uid: str,
        series_uid: str,
        calling_ae: str = "",
        now: float | None = None,
        batch_id: int | None = None,
    ) -> int:
        """Insert a batch in state ``receiving``; returns its id."""
        now = time.time() if now is None else now
        values: dict[str, Any] = {
            "study_uid": study_uid,
            "series_uid": series_uid,
            "calling_ae": calling_ae[:16],
            "state": t.RECEIVING,
            "location": t.IN_INCOMING,
            "first_received_at": now,
            "last_received_at": now,
        }
        if batch_id is not None:
            values["id"] = batch_id
        with self._write() as connection:
            inserted = connection.execute(
                insert(GatewayBatch).values(**values)
            ).inserted_primary_key
        assert inserted is not None
        return int(inserted[0])

    def _leave(self, entry: _OpenBatch) -> None:
        with self._lock:
            entry.inflight -= 1
            entry.last = time.time()

    def add_instance(
        self,
        batch_id: int,
        sop_uid: str,
        sop_class_uid: str,
        file_name: str,
        now: float,
        size: int,
        digest: str = "",
        signature_uid: str | None = None,
    ) -> bool:
        """Insert the instance's row; False when the same instance was already in the batch."""
        values = {
            "batch_id": batch_id,
            "sop_uid": sop_uid,
            "sop_class_uid": sop_class_uid,
            "role": t.IMAGE,
            "file_name": file_name,
            "size": size,
            "sha256": digest,
            "received_at": now,
            "state": t.SPOOLED,
            "signature_uid": signature_uid,
        }
        try:
            with self._write() as connection:
                # one prepared statement, parameters apart: building .values() per instance
                # costs more CPU than the insert itself
                connection.execute(_INSERT_INSTANCE, values)
            return True
        except IntegrityError:
            # a resend of an instance already in this batch: the rename replaces the file, so
            # the row takes the new file's digest and signature
            with self._write() as connection:
                connection.execute(
                    update(GatewayInstance)
                    .where(GatewayInstance.batch_id == batch_id, GatewayInstance.sop_uid == sop_uid)
                    .values(size=size, sha256=digest, signature_uid=signature_uid)
                )
            return False

    def drop_instance(self, batch_id: int, sop_uid: str) -> None:
        with self._write() as connection:
            connection.execute(
                delete(GatewayInstance).where(
                    GatewayInstance.batch_id == batch_id, GatewayInstance.sop_uid == sop_uid
                )
            )

    def close_quiet_batches(self, quiet_seconds: float, now: float | None = None) -> list[int]:
        """Mark complete every open batch that received nothing for ``quiet_seconds``."""
        now = time.time() if now is None else now
        closed: list[int] = []
        with self._lock:
            for key, entry in list(self._open.items()):
                if entry.inflight or now - entry.last < quiet_seconds:
                    continue
                try:
                    with self._write() as connection:
                        count = connection.execute(
                            select(func.count())
                            .select_from(GatewayInstance)
                            .where(GatewayInstance.batch_id == entry.batch_id)
                        ).scalar_one()
                        if count == 0:
                            connection.execute(
                                delete(GatewayBatch).where(GatewayBatch.id == entry.batch_id)
                            )
                        else:
                            connection.execute(
                                update(GatewayBatch)
                                .where(GatewayBatch.id == entry.batch_id)
                                .values(state=t.COMPLETE, last_received_at=entry.last)
                            )
                            closed.append(entry.batch_id)
                except SQLAlchemyError as exc:
                    LOGGER.warning("could not close batch %s yet: %s", entry.batch_id, exc)
                    continue
                del self._open[key]
        return closed

    @property
    def open_batches(self) -> int:
        with self._lock:
            return len(self._open)

    # -- paths -------------------------------------------------------------------------------

    def _batch_path(self, location: str, study_uid: str, series_uid: str, batch_id: int) -> Path:
        return self.root / location / safe_name(study_uid) / safe_name(series_uid) / str(batch_id)

    def batch_dir(self, batch: GatewayBatch) -> Path:
        """Where the batch's received files are (fixing the index after an interrupted move)."""
        path = self._batch_path(batch.location, batch.study_uid, batch.series_uid, batch.id)
        if batch.location == t.IN_INCOMING and not path.exists():
            moved = self._batch_path(t.IN_QUARANTINE, batch.study_uid, batch.series_uid, batch.id)
            if moved.exists():
                self._set_location(batch.id, t.IN_QUARANTINE)
                batch.location = t.IN_QUARANTINE
                return moved
        return path

    def results_dir(self, batch_id: int) -> Path:
        return self.root / "results" / str(batch_id)

    def instance_path(self, batch: GatewayBatch, instance: GatewayInstance) -> Path:
        if instance.role == t.RESULT:
            return self.results_dir(batch.id) / instance.file_name
        return self.batch_dir(batch) / instance.file_name

    # -- reading the index -------------------------------------------------------------------

    def batch(self, batch_id: int) -> GatewayBatch:
        with Session(self.engine, expire_on_commit=False) as session:
            batch = session.get(GatewayBatch, batch_id)
            if batch is None:
                raise KeyError(f"no batch {batch_id} in the spool index")
            session.expunge(batch)
            return batch

    def instances(
        self, batch_id: int, *, role: str | None = None, states: Sequence[str] | None = None
    ) -> list[GatewayInstance]:
        query = select(GatewayInstance).where(GatewayInstance.batch_id == batch_id)
        if role is not None:
            query = query.where(GatewayInstance.role == role)
        if states is not None:
            query = query.where(GatewayInstance.state.in_(list(states)))
        with Session(self.engine, expire_on_commit=False) as session:
            rows = list(session.scalars(query.order_by(GatewayInstance.id)))
            session.expunge_all()
            return rows

    def batch_ids(self, state: str, *, due_by: float | None = None) -> list[int]:
        query = select(GatewayBatch.id).where(GatewayBatch.state == state)
        if due_by is not None:
            query = query.where(GatewayBatch.next_attempt_at <= due_by)
        with self.engine.connect() as connection:
            return [int(v) for v in connection.execute(query.order_by(GatewayBatch.id)).scalars()]

    # -- recording progress ------------------------------------------------------------------

    def record_analysis(
        self,
        batch_id: int,
        *,
        outcome: str,
        score: float | None,
        actions: Sequence[str],
        results: list[dict[str, Any]],
        result_objects: Sequence[ResultObject] = (),
    ) -> None:
        """Record the outcome and the result objects in one transaction (state ``analysed``)."""
        now = time.time()
        with self._write() as connection:
            connection.execute(
                delete(GatewayInstance).where(
                    GatewayInstance.batch_id == batch_id, GatewayInstance.role == t.RESULT
                )
            )
            for obj in result_objects:
                connection.execute(
                    insert(GatewayInstance).values(
                        batch_id=batch_id,
                        sop_uid=obj.sop_uid,
                        sop_class_uid=obj.sop_class_uid,
                        role=t.RESULT,
                        file_name=obj.file_name,
                        size=obj.size,
                        received_at=now,
                        state=t.SPOOLED,
                    )
                )
            connection.execute(
                update(GatewayBatch)
                .where(GatewayBatch.id == batch_id)
                .values(
                    state=t.ANALYSED,
                    outcome=outcome,
                    score=score,
                    actions=",".join(actions),
                    results_json=json.dumps(results, default=str),
                    analysed_at=now,
                    next_attempt_at=0.0,
                )
            )

    def mark_instance(self, instance_id: int, state: str, status: int | None = None) -> None:
        values: dict[str, Any] = {"state": state, "status": status}
        if state == t.FORWARDED:
            values["forwarded_at"] = time.time()
        with self._write() as connection:
            connection.execute(
                update(GatewayInstance).where(GatewayInstance.id == instance_id).values(**values)
            )

    def record_verifications(self, checked: dict[int, str]) -> None:
        """Record what the check before forwarding found, per instance id."""
        with self._write() as connection:
            for instance_id, verdict in checked.items():
                connection.execute(
                    update(GatewayInstance)
                    .where(GatewayInstance.id == instance_id)
                    .values(verification=verdict)
                )

    def override_outcome(
        self,
        batch_id: int,
        *,
        outcome: str,
        score: float | None,
        actions: Sequence[str],
        results: list[dict[str, Any]],
    ) -> None:
        """Replace a batch's outcome and actions after analysis (a broken signature found on
        the way out); its alert is sent again with the new reason."""
        with self._write() as connection:
            connection.execute(
                update(GatewayBatch)
                .where(GatewayBatch.id == batch_id)
                .values(
                    outcome=outcome,
                    score=score,
                    actions=",".join(actions),
                    results_json=json.dumps(results, default=str),
                    alerted=False,
                )
            )

    def mark_alerted(self, batch_id: int) -> None:
        with self._write() as connection:
            connection.execute(
                update(GatewayBatch).where(GatewayBatch.id == batch_id).values(alerted=True)
            )

    def defer(self, batch_id: int, error: str, delay_s: float) -> None:
        """Record a failed dispatch attempt; the batch is tried again after ``delay_s``."""
        with self._write() as connection:
            connection.execute(
                update(GatewayBatch)
                .where(GatewayBatch.id == batch_id)
                .values(
                    attempts=GatewayBatch.attempts + 1,
                    last_error=error,
                    next_attempt_at=time.time() + delay_s,
                )
            )
        self.log_event("error", error, batch_id)

    def _set_location(self, batch_id: int, location: str) -> None:
        with self._write() as connection:
            connection.execute(
                update(GatewayBatch).where(GatewayBatch.id == batch_id).values(location=location)
            )

    def log_event(self, level: str, message: str, batch_id: int | None = None) -> None:
        try:
            with self._write() as connection:
                connection.execute(
                    insert(GatewayEvent).values(
                        at=time.time(), level=level, batch_id=batch_id, message=message[:4000]
                    )
                )
        except SQLAlchemyError as exc:  # the log of errors must not become an error itself
            LOGGER.warning("could not record event %r: %s", message, exc)

    # -- final moves -------------------------------------------------------------------------

    def quarantine(self, batch: GatewayBatch, verdict: dict[str, Any]) -> Path:
        """Move the batch's files (and a copy of its results) into the quarantine folder."""
        source = self.batch_dir(batch)
        target = self._batch_path(t.IN_QUARANTINE, batch.study_uid, batch.series_uid, batch.id)
        if batch.location != t.IN_QUARANTINE:
            if source.exists() and not target.exists():
                move_dir(source, target)
            else:
                make_dirs(target)
            self._set_location(batch.id, t.IN_QUARANTINE)
            batch.location = t.IN_QUARANTINE
        results = self.results_dir(batch.id)
        if results.exists():
            copy = target / "results"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(results, copy)
            fsync_dir(target)
        write_atomic(target / "verdict.json", json.dumps(verdict, indent=2, default=str).encode())
        return target

    def finish(self, batch: GatewayBatch, *, keep_forwarded: bool = False) -> None:
        """Clear forwarded files and results away and mark the batch done."""
        self._sync_index()
        if batch.location == t.IN_INCOMING:
            source = self.batch_dir(batch)
            if source.exists():
                if keep_forwarded:
                    target = self._batch_path("sent", batch.study_uid, batch.series_uid, batch.id)
                    move_dir(source, target)
                else:
                    shutil.rmtree(source, ignore_errors=True)
                    self._known_dirs.discard(source)
                    _remove_empty_parents(source.parent, self.root / t.IN_INCOMING)
            self._set_location(batch.id, t.GONE)
        shutil.rmtree(self.results_dir(batch.id), ignore_errors=True)
        with self._write() as connection:
            connection.execute(
                update(GatewayBatch)
                .where(GatewayBatch.id == batch.id)
                .values(state=t.DONE, done_at=time.time(), last_error=None)
            )

    def _sync_index(self) -> None:
        """Make every commit so far durable before files are deleted (SQLite: a checkpoint
        fsyncs the write-ahead log), so a power cut cannot forget that they were forwarded."""
        if self.engine.dialect.name != "sqlite":
            return
        with self.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    # -- recovery --------------------------------------------------------------------------

    def recover(self) -> Recovery:
        """Make the index agree with the files after a crash, and say what is left to do."""
        from medforensics.gateway.recovery import recover

        return recover(self)

    def reopen(self, batch: GatewayBatch) -> None:
        """Take a batch that was receiving before a restart as open again; its quiet period
        starts now (senders are likely to resend after our crash)."""
        with self._lock:
            key = (batch.study_uid, batch.series_uid)
            self._open[key] = _OpenBatch(batch.id, 0, time.time())

    def delete_batch(self, batch_id: int) -> None:
        with self._write() as connection:
            connection.execute(delete(GatewayBatch).where(GatewayBatch.id == batch_id))


def _remove_empty_parents(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents up to ``stop`` while they are empty."""
    current = folder
    while current != stop and stop in current.parents:
        try:
            current.rmdir()
        except OSError:
            return
        current = current.parent
