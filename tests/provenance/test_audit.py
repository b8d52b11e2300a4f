"""The hash-chained audit log: edits, deletions, swaps and truncation are caught and located."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine

from medforensics.db import make_engine
from medforensics.provenance.audit import (
    GENESIS,
    AuditLog,
    canonical_json,
    entry_hash,
    record_scan_result,
)
from medforensics.scan import ResultFinding, ScanResult

DIGEST = "ab" * 32


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path / 'audit.db'}")


def _filled(engine: Engine, n: int = 6) -> AuditLog:
    log = AuditLog(engine)
    for i in range(n):
        log.append(
            action="scan", actor=f"user{i}", inputs={f"file{i}.dcm": DIGEST},
            result={"verdict": "authentic", "score": 0.1 * i}, model={"name": "auto"},
        )  # fmt: skip
    return log


def _sql(engine: Engine, statement: str) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql(statement)


def test_entries_are_chained_and_verify(engine: Engine) -> None:
    log = _filled(engine, 3)
    entries = log.entries(newest_first=False)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS
    assert entries[1].prev_hash == entries[0].entry_hash
    assert entries[2].entry_hash == log.head()
    first = entries[0]
    assert first.entry_hash == entry_hash(
        1, first.time, "user0", "scan", {"file0.dcm": DIGEST},
        {"verdict": "authentic", "score": 0.0}, {"name": "auto"}, GENESIS,
    )  # fmt: skip
    report = log.verify(expect_head=log.head())
    assert report.ok and report.entries == 3 and report.problems == []


def test_an_edited_entry_is_named(engine: Engine) -> None:
    log = _filled(engine)
    _sql(
        engine,
        """UPDATE audit_log SET result = '{"score":0.9,"verdict":"manipulated"}' WHERE seq = 3""",
    )
    report = log.verify()
    assert not report.ok
    assert [(p.seq, p.message) for p in report.problems] == [
        (3, "was edited: its content no longer matches its hash")
    ]


def test_an_edited_and_rehashed_entry_is_named(engine: Engine) -> None:
    log = _filled(engine)
    row = log.entries(newest_first=False)[3]  # seq 4
    new_hash = entry_hash(4, row.time, "mallory", row.action, row.inputs, row.result, row.model,
                          row.prev_hash)  # fmt: skip
    _sql(engine, f"UPDATE audit_log SET actor = 'mallory', entry_hash = '{new_hash}' WHERE seq = 4")
    problems = log.verify().problems
    assert [p.seq for p in problems] == [4]
    assert "re-hashed" in problems[0].message


def test_a_deleted_entry_is_named(engine: Engine) -> None:
    log = _filled(engine)
    _sql(engine, "DELETE FROM audit_log WHERE seq = 4")
    problems = log.verify().problems
    assert [(p.seq, p.message) for p in problems] == [(4, "entry 4 is missing (deleted)")]


def test_deleting_the_first_entries_is_caught(engine: Engine) -> None:
    log = _filled(engine)
    _sql(engine, "DELETE FROM audit_log WHERE seq <= 2")
    problems = log.verify().problems
    assert [(p.seq, p.message) for p in problems] == [(1, "entries 1 to 2 are missing (deleted)")]


def test_swapped_entries_are_named(engine: Engine) -> None:
    log = _filled(engine)
    _sql(engine, "UPDATE audit_log SET seq = -1 WHERE seq = 2")
    _sql(engine, "UPDATE audit_log SET seq = 2 WHERE seq = 5")
    _sql(engine, "UPDATE audit_log SET seq = 5 WHERE seq = -1")
    problems = log.verify().problems
    assert {(p.seq, p.message) for p in problems} == {
        (2, "holds the entry written as 5: entries were swapped or re-numbered"),
        (5, "holds the entry written as 2: entries were swapped or re-numbered"),
    }


def test_deleting_and_renumbering_is_caught(engine: Engine) -> None:
    log = _filled(engine)
    _sql(engine, "DELETE FROM audit_log WHERE seq = 3")
    _sql(engine, "UPDATE audit_log SET seq = seq - 1 WHERE seq > 3")
    problems = log.verify().problems
    assert [p.seq for p in problems] == [3, 4, 5]
    assert "written as 4" in problems[0].message


def test_tail_truncation_is_caught_against_a_recorded_head(engine: Engine) -> None:
    log = _filled(engine)
    recorded = log.head()
    assert recorded is not None
    _sql(engine, "DELETE FROM audit_log WHERE seq >= 5")
    assert log.verify().ok  # a shorter chain is consistent on its own...
    report = log.verify(expect_head=recorded)  # ...but not with the head recorded elsewhere
    assert [p.seq for p in report.problems] == [5]
    assert "removed from the end" in report.problems[0].message


def test_a_head_recorded_earlier_accepts_later_entries(engine: Engine) -> None:
    log = _filled(engine, 2)
    recorded = log.head()
    _filled(engine, 3)
    report = log.verify(expect_head=recorded)
    assert report.ok
    assert report.notes == ["the recorded head is entry 2; 3 entries were appended since"]


def test_concurrent_appends_keep_one_chain(engine: Engine) -> None:
    log = AuditLog(engine)
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            other = AuditLog(engine)
            for i in range(10):
                other.append(action="scan", actor=name, inputs={}, result={"i": i})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    entries = log.entries(newest_first=False)
    assert [e.seq for e in entries] == list(range(1, 41))
    assert log.verify().ok


def test_record_scan_result_keeps_hashes_verdict_and_model(engine: Engine) -> None:
    log = AuditLog(engine)
    result = ScanResult(
        input="/data/ct", kind="dicom-series", modality="CT", shape=[8, 64, 48], score=0.93,
        verdict="manipulated",
        findings=[ResultFinding(kind="local", score=0.93, slice=3, row=10, col=12, detail="blob")],
        detector="auto", series_instance_uid="1.2.3", files=8,
    )  # fmt: skip
    entry = record_scan_result(
        log, result, actor="alice", model={"name": "ct-local", "version": 2},
        input_hashes={"IM1.dcm": DIGEST},
    )  # fmt: skip
    assert entry.action == "scan" and entry.actor == "alice"
    assert entry.inputs == {"IM1.dcm": DIGEST}
    assert entry.result["verdict"] == "manipulated" and entry.result["score"] == 0.93
    assert entry.result["top_findings"][0]["slice"] == 3
    assert entry.model == {"name": "ct-local", "version": 2}
    assert log.verify().ok


def test_inputs_must_be_sha256_digests(engine: Engine) -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        AuditLog(engine).append(action="scan", actor="a", inputs={"x": "md5:123"}, result={})


def test_canonical_json_is_order_independent() -> None:
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1})
    assert canonical_json({"a": "é"}) == '{"a":"é"}'
