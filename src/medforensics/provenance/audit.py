"""A hash-chained, append-only audit log of analyses, stored in the product database.

Every entry records who (``actor``) did what (``action``) to which inputs (name -> SHA-256),
with which result and model, and when (UTC). Entries are numbered ``seq`` = 1, 2, 3... and
chained: each stores the hash of the entry before it (``prev_hash``; 64 zeros for the first)
and its own hash, ``entry_hash`` = SHA-256 of the canonical JSON (sorted keys, no spaces,
UTF-8) of ``{seq, time, actor, action, inputs, result, model, prev_hash}``.

``AuditLog.verify`` walks the chain and names the entry (by ``seq``) where it breaks:

* an **edited** entry no longer matches its hash;
* a **deleted** entry leaves a gap in ``seq`` and a successor whose ``prev_hash`` points to
  nothing;
* **swapped or re-numbered** entries carry the hash of another position (the message says which
  ``seq`` they were written as);
* **removed tail** entries leave a shorter, internally consistent chain: that is only caught
  against a head recorded elsewhere (``verify(expect_head=...)``; ``medforensics audit head``
  prints it). Record the head regularly outside this database (a ticket, a printed report, a
  second system) — the same holds for a chain rebuilt from scratch by someone with write access
  to the database and the time to recompute every hash.

Appends are serialised by the database: ``seq`` is the primary key, so two writers that read the
same head cannot both insert the next entry; the loser retries on the new head.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Integer, String, Text, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Mapped, Session, mapped_column

from medforensics.db import Base
from medforensics.utils.hashing import file_sha256

if TYPE_CHECKING:
    from medforensics.detect.types import Detection
    from medforensics.io.types import ImageVolume
    from medforensics.scan import ScanResult

GENESIS = "0" * 64
_RETRIES = 50


class AuditRow(Base):
    """One audit entry as stored (JSON columns hold the canonical JSON text)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    time: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    inputs: Mapped[str] = mapped_column(Text)
    result: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the log."""

    seq: int
    time: str
    actor: str
    action: str
    inputs: dict[str, str]
    result: dict[str, Any]
    model: dict[str, Any] | None
    prev_hash: str
    entry_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "inputs": self.inputs,
            "result": self.result,
            "model": self.model,
            "prev_hash": self.prev_hash,
            "entry_hash": self.entry_hash,
        }


@dataclass(frozen=True)
class AuditProblem:
    """Where the chain breaks: the entry ``seq`` and what is wrong with it."""

    seq: int
    message: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.message}"


@dataclass
class AuditReport:
    """The outcome of ``AuditLog.verify``."""

    entries: int
    head: str | None
    problems: list[AuditProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def canonical_json(value: object) -> str:
    """The one JSON text of ``value`` that hashes are computed over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _plain(value: object) -> Any:
    """``value`` as plain JSON data (tuples become lists, numpy scalars numbers...)."""
    return json.loads(json.dumps(value, default=_default, allow_nan=False))


def _default(value: object) -> object:
    for attr in ("item", "tolist"):  # numpy scalars and arrays
        if hasattr(value, attr):
            return getattr(value, attr)()
    return str(value)


def entry_hash(
    seq: int,
    time: str,
    actor: str,
    action: str,
    inputs: object,
    result: object,
    model: object,
    prev_hash: str,
) -> str:
    body = {
        "seq": seq,
        "time": time,
        "actor": actor,
        "action": action,
        "inputs": inputs,
        "result": result,
        "model": model,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        time=row.time,
        actor=row.actor,
        action=row.action,
        inputs=json.loads(row.inputs),
        result=json.loads(row.result),
        model=json.loads(row.model),
        prev_hash=row.prev_hash,
        entry_hash=row.entry_hash,
    )


def _row_hash(row: AuditRow, seq: int | None = None) -> str | None:
    """The hash of the row's content at position ``seq`` (default: its own); None if unreadable."""
    try:
        return entry_hash(
            row.seq if seq is None else seq, row.time, row.actor, row.action,
            json.loads(row.inputs), json.loads(row.result), json.loads(row.model), row.prev_hash,
        )  # fmt: skip
    except (TypeError, ValueError):
        return None


class AuditLog:
    """The audit log in the database behind ``engine`` (tables created by ``make_engine``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        Base.metadata.create_all(engine, tables=[AuditRow.__table__])  # type: ignore[list-item]

    def append(
        self,
        *,
        action: str,
        actor: str,
        inputs: Mapping[str, str],
        result: Mapping[str, object],
        model: Mapping[str, object] | None = None,
    ) -> AuditEntry:
        """Add an entry at the head of the chain and return it.

        Args:
            action: what was done (``scan``, ``sign``, ``verify``...).
            actor: who did it (user name, API key id, service).
            inputs: input name -> SHA-256 hex digest of its bytes.
            result: a JSON-serialisable summary of the outcome.
            model: a JSON-serialisable description of the model used, if any.
        """
        for digest in inputs.values():
            if len(str(digest)) != 64 or any(c not in "0123456789abcdef" for c in str(digest)):
                raise ValueError(f"input hashes must be SHA-256 hex digests, got {digest!r}")
        inputs_plain = _plain(dict(inputs))
        result_plain = _plain(dict(result))
        model_plain = _plain(dict(model)) if model is not None else None
        for attempt in range(_RETRIES):
            try:
                return self._append_once(action, actor, inputs_plain, result_plain, model_plain)
            except (IntegrityError, OperationalError) as exc:
                if isinstance(exc, OperationalError) and not _is_busy(exc):
                    raise
                time.sleep(0.005 * (attempt + 1))
        raise RuntimeError(f"could not append to the audit log after {_RETRIES} attempts")

    def _append_once(
        self, action: str, actor: str, inputs: Any, result: Any, model: Any
    ) -> AuditEntry:
        with Session(self.engine) as session, session.begin():
            last = session.scalars(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).first()
            seq = last.seq + 1 if last else 1
            prev = last.entry_hash if last else GENESIS
            moment = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
            digest = entry_hash(seq, moment, actor, action, inputs, result, model, prev)
            row = AuditRow(
                seq=seq, time=moment, actor=actor, action=action,
                inputs=canonical_json(inputs), result=canonical_json(result),
                model=canonical_json(model), prev_hash=prev, entry_hash=digest,
            )  # fmt: skip
            session.add(row)
            session.flush()
            return _entry(row)

    def head(self) -> str | None:
        """The hash of the newest entry (None for an empty log): record it elsewhere."""
        with Session(self.engine) as session:
            last = session.scalars(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).first()
            return last.entry_hash if last else None

    def entries(self, limit: int | None = None, newest_first: bool = True) -> list[AuditEntry]:
        with Session(self.engine) as session:
            order = AuditRow.seq.desc() if newest_first else AuditRow.seq.asc()
            query = select(AuditRow).order_by(order)
            if limit is not None:
                query = query.limit(limit)
            return [_entry(row) for row in session.scalars(query)]

    def verify(self, expect_head: str | None = None) -> AuditReport:
        """Walk the chain from the first entry; every problem names the entry's ``seq``."""
        with Session(self.engine) as session:
            rows = list(session.scalars(select(AuditRow).order_by(AuditRow.seq.asc())))
        report = AuditReport(entries=len(rows), head=rows[-1].entry_hash if rows else None)
        position_of = {row.entry_hash: row.seq for row in rows}
        expected_seq, expected_prev = 1, GENESIS
        # entries found out of place: the entries chained to them are out of step too, which
        # says nothing new
        moved = {
            row.entry_hash
            for row in rows
            if _row_hash(row) != row.entry_hash
            and _written_position(row, position_of) not in (None, row.seq)
        }
        for row in rows:
            problems = _row_problems(row, expected_seq, expected_prev, position_of, moved)
            report.problems.extend(problems)
            expected_seq, expected_prev = row.seq + 1, row.entry_hash
        if expect_head is not None:
            _check_head(report, rows, expect_head.strip().lower())
        return report


def _row_problems(
    row: AuditRow,
    expected_seq: int,
    expected_prev: str,
    position_of: Mapping[str, int],
    moved: set[str],
) -> list[AuditProblem]:
    problems: list[AuditProblem] = []
    if row.seq > expected_seq:
        missing = (
            f"entry {expected_seq} is" if row.seq == expected_seq + 1
            else f"entries {expected_seq} to {row.seq - 1} are"
        )  # fmt: skip
        problems.append(AuditProblem(expected_seq, f"{missing} missing (deleted)"))
    actual = _row_hash(row)
    if actual != row.entry_hash:
        written_as = _written_position(row, position_of)
        if written_as is not None and written_as != row.seq:
            problems.append(
                AuditProblem(
                    row.seq,
                    f"holds the entry written as {written_as}: entries were swapped or re-numbered",
                )
            )
        else:
            problems.append(
                AuditProblem(row.seq, "was edited: its content no longer matches its hash")
            )
        return problems
    if row.prev_hash != expected_prev and row.seq == expected_seq and row.prev_hash not in moved:
        previous = position_of.get(row.prev_hash)
        if previous is not None:
            problems.append(
                AuditProblem(
                    row.seq, f"follows entry {previous} in the chain: entries were re-ordered"
                )
            )
        else:
            problems.append(
                AuditProblem(
                    row.seq - 1,
                    f"was replaced, or altered and re-hashed: entry {row.seq} was chained "
                    "to another entry",
                )
            )
    return problems


def _written_position(row: AuditRow, position_of: Mapping[str, int]) -> int | None:
    """The ``seq`` a moved entry was written at (its hash covers it), if it can be found."""
    candidates: list[int] = []
    if row.prev_hash == GENESIS:
        candidates.append(1)
    elif row.prev_hash in position_of:
        candidates.append(position_of[row.prev_hash] + 1)
    # the predecessor may have moved too: try the positions around this one
    candidates.extend(range(max(1, row.seq - 64), row.seq + 65))
    for candidate in candidates:
        if _row_hash(row, candidate) == row.entry_hash:
            return candidate
    return None


def _check_head(report: AuditReport, rows: list[AuditRow], expect_head: str) -> None:
    if report.head == expect_head:
        return
    recorded = next((row for row in rows if row.entry_hash == expect_head), None)
    last_seq = rows[-1].seq if rows else 0
    if recorded is not None:
        report.notes.append(
            f"the recorded head is entry {recorded.seq}; {last_seq - recorded.seq} entries "
            "were appended since"
        )
        return
    report.problems.append(
        AuditProblem(
            last_seq + 1 if rows else 1,
            f"the recorded head {expect_head[:16]}... is not in the log: entries after "
            f"{last_seq} were removed from the end (or the log was rebuilt)",
        )
    )


def _is_busy(exc: OperationalError) -> bool:
    text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
    return "locked" in text or "busy" in text or "could not serialize" in text


def scan_summary(result: ScanResult) -> dict[str, Any]:
    """What the audit log keeps of a scan result: the verdict and its evidence, no pixels."""
    top = [
        {"kind": f.kind, "score": f.score, "slice": f.slice, "detail": f.detail[:200]}
        for f in result.findings[:5]
    ]
    return {
        "input": result.input,
        "kind": result.kind,
        "modality": result.modality,
        "shape": result.shape,
        "score": result.score,
        "verdict": result.verdict,
        "detector": result.detector,
        "series_instance_uid": result.series_instance_uid,
        "files": result.files,
        "findings": len(result.findings),
        "top_findings": top,
        "error": result.error,
    }


def record_scan_result(
    log: AuditLog,
    result: ScanResult,
    *,
    actor: str,
    model: Mapping[str, object] | None,
    input_hashes: Mapping[str, str],
) -> AuditEntry:
    """Append a ``scan`` entry for ``result`` (see ``scan_summary`` for what is kept)."""
    return log.append(
        action="scan", actor=actor, inputs=input_hashes, result=scan_summary(result), model=model
    )


class AuditHook:
    """A ``scan_paths(on_analysed=...)`` hook: one entry per analysis, with its files' hashes.

    Used by ``scan --audit`` and the DICOM gateway (the REST API records its own, naming uploads).
    """

    label = "audit"

    def __init__(self, log: AuditLog, actor: str, model: Mapping[str, object] | None) -> None:
        self.log, self.actor, self.model = log, actor, model
        self.recorded = 0

    def __call__(self, volume: ImageVolume, detection: Detection, result: ScanResult) -> None:
        hashes = {str(path): file_sha256(path) for path in volume.source_files}
        record_scan_result(
            self.log, result, actor=self.actor, model=self.model, input_hashes=hashes
        )
        self.recorded += 1
