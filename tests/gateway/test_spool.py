"""The durable spool: what is acknowledged is on disk and indexed; a crash is repaired later."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medforensics.gateway import tables as t
from medforensics.gateway.durable import safe_name
from medforensics.gateway.spool import Spool, SpoolError
from medforensics.samples import write_ct_series


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    return write_ct_series(np.zeros((4, 16, 16), np.float32), tmp_path / "series")


def store(spool: Spool, path: Path, **changes: str) -> Path:
    ds = pydicom.dcmread(path)
    keys = {
        "sop_uid": str(ds.SOPInstanceUID),
        "sop_class_uid": str(ds.SOPClassUID),
        "study_uid": str(ds.StudyInstanceUID),
        "series_uid": str(ds.SeriesInstanceUID),
        **changes,
    }
    return spool.store(path.read_bytes(), calling_ae="CT01", **keys)


def test_stored_instance_is_on_disk_and_indexed(tmp_path: Path, files: list[Path]) -> None:
    spool = Spool.at(tmp_path / "spool")
    target = store(spool, files[0])
    assert target.read_bytes() == files[0].read_bytes()
    ds = pydicom.dcmread(files[0])
    assert target.parts[-4:] == (
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        "1",
        f"{ds.SOPInstanceUID}.dcm",
    )
    assert not list(spool.tmp.iterdir())
    (row,) = spool.instances(1)
    assert (row.sop_uid, row.state, row.role) == (ds.SOPInstanceUID, t.SPOOLED, t.IMAGE)
    assert spool.batch(1).calling_ae == "CT01"


def test_a_series_is_one_batch_until_quiet(tmp_path: Path, files: list[Path]) -> None:
    spool = Spool.at(tmp_path / "spool")
    store(spool, files[0])
    store(spool, files[1])
    store(spool, files[1])  # a resend replaces the file, it is not a second instance
    assert len(spool.instances(1)) == 2
    assert spool.close_quiet_batches(60.0) == []  # not quiet yet
    assert spool.close_quiet_batches(0.0) == [1]
    assert spool.batch(1).state == t.COMPLETE
    store(spool, files[2])  # a late instance starts a new batch of the same series
    assert spool.batch_ids(t.RECEIVING) == [2]


def test_hostile_uids_cannot_leave_the_spool(tmp_path: Path, files: list[Path]) -> None:
    spool = Spool.at(tmp_path / "spool")
    target = store(spool, files[0], sop_uid="../../../evil", series_uid="/etc")
    assert spool.root in target.parents
    assert target.name == f"{safe_name('../../../evil')}.dcm" and target.name.startswith("x")


def test_full_disk_answers_out_of_resources(tmp_path: Path, files: list[Path]) -> None:
    spool = Spool.at(tmp_path / "spool", min_free_bytes=1 << 62)
    with pytest.raises(SpoolError) as caught:
        store(spool, files[0])
    assert caught.value.status == 0xA700
    assert "almost full" in caught.value.message
    assert spool.instances(1) == [] and not list(spool.tmp.iterdir())


def test_recover_repairs_every_crash_point(tmp_path: Path, files: list[Path]) -> None:
    root = tmp_path / "spool"
    spool = Spool.at(root)
    stored = store(spool, files[0])
    # crash after the temp file was written, before the index row: never acknowledged
    (spool.tmp / "dead.part").write_bytes(b"partial")
    # crash after the row, before the rename: never acknowledged either
    ds1 = pydicom.dcmread(files[1])
    spool.add_instance(1, str(ds1.SOPInstanceUID), str(ds1.SOPClassUID), "gone.dcm", 0.0, 1)
    # crash after the rename, before the row reached the index (or the index lost it)
    orphan = stored.parent / f"{pydicom.dcmread(files[2]).SOPInstanceUID}.dcm"
    shutil.copyfile(files[2], orphan)
    spool.engine.dispose()

    restarted = Spool.at(root)
    report = restarted.recover()
    assert report.removed_temp_files == 1
    assert report.dropped_unacknowledged == 1
    assert report.indexed_orphans == 1
    assert report.reopened == [1]
    names = sorted(row.file_name for row in restarted.instances(1))
    assert names == sorted([stored.name, orphan.name])
    # the reopened batch closes after its quiet period like any other
    assert restarted.close_quiet_batches(0.0) == [1]


def test_recover_rebuilds_a_lost_index_from_the_files(tmp_path: Path, files: list[Path]) -> None:
    root = tmp_path / "spool"
    spool = Spool.at(root)
    for path in files:
        store(spool, path)
    spool.engine.dispose()
    for name in ("gateway.db", "gateway.db-wal", "gateway.db-shm"):
        (root / name).unlink(missing_ok=True)

    restarted = Spool.at(root)
    report = restarted.recover()
    assert report.reopened == [1]
    assert len(restarted.instances(1)) == len(files)


def test_recover_resumes_analysis_and_dispatch(tmp_path: Path, files: list[Path]) -> None:
    root = tmp_path / "spool"
    spool = Spool.at(root)
    store(spool, files[0])
    spool.close_quiet_batches(0.0)
    store(spool, files[1], series_uid="1.2.3.4")
    spool.close_quiet_batches(0.0)
    spool.record_analysis(2, outcome="authentic", score=0.1, actions=["forward"], results=[])
    report = Spool.at(root).recover()
    assert report.to_analyse == [1] and report.to_dispatch == [2] and report.reopened == []


def test_quarantine_moves_the_batch_and_finish_clears_forwarded(
    tmp_path: Path, files: list[Path]
) -> None:
    spool = Spool.at(tmp_path / "spool")
    store(spool, files[0])
    store(spool, files[1], series_uid="1.2.3.4")
    spool.close_quiet_batches(0.0)
    quarantined = spool.batch(1)
    folder = spool.quarantine(quarantined, {"outcome": "manipulated"})
    assert folder.parts[-4] == t.IN_QUARANTINE
    assert (folder / "verdict.json").exists() and len(list(folder.glob("*.dcm"))) == 1
    assert spool.batch(1).location == t.IN_QUARANTINE
    spool.finish(quarantined)
    assert list(folder.glob("*.dcm")), "finishing a quarantined batch keeps its files"

    forwarded = spool.batch(2)
    source = spool.batch_dir(forwarded)
    spool.finish(forwarded)
    assert not source.exists() and spool.batch(2).state == t.DONE


def test_a_resend_after_the_batch_closed_is_not_spooled_twice(
    tmp_path: Path, files: list[Path]
) -> None:
    spool = Spool.at(tmp_path / "spool")
    store(spool, files[0])
    spool.close_quiet_batches(0.0)
    # same UID, same bytes: already held, acknowledged without a second copy
    assert store(spool, files[0]) is None
    assert spool.batch_ids(t.RECEIVING) == []
    # same UID, other bytes: a different object (perhaps a forgery), spooled and analysed
    altered = tmp_path / "altered.dcm"
    ds = pydicom.dcmread(files[0])
    ds.PatientID = "SOMEONE-ELSE"
    ds.save_as(altered)
    assert store(spool, altered) is not None
    assert spool.batch_ids(t.RECEIVING) == [2]


def test_a_response_the_reactor_took_is_not_lost(files: list[Path]) -> None:
    """pynetdicom's reactor thread can take a C-STORE response off the queue before the request
    waiting for it (a race under CPU load): the forwarder must still see it, or it times out,
    defers and stores the instance a second time at the destination."""
    from medforensics.gateway.config import Destination
    from medforensics.gateway.forward import Forwarder, Outgoing
    from tests.gateway import CountingSCP

    destination = CountingSCP().start()
    forwarder = Forwarder(
        Destination(destination.ae_title, "127.0.0.1", destination.port),
        calling_ae="GW",
        timeout_s=2.0,
    )
    associate = forwarder._associate

    def racing_association(by_class: dict[str, set[str]]) -> object:
        assoc = associate(by_class)
        send = assoc.dimse.send_msg

        def send_then_race(msg: object, context_id: int) -> None:
            send(msg, context_id)
            # what the race does: the reactor, past its checkpoint, takes the response
            item = assoc.dimse.msg_queue.get(timeout=5)
            assoc._serve_request(item[1], item[0])

        assoc.dimse.send_msg = send_then_race
        return assoc

    forwarder._associate = racing_association  # type: ignore[method-assign]
    statuses: list[int] = []
    try:
        forwarder.send([Outgoing(1, files[0])], lambda _item, status: statuses.append(status))
    finally:
        destination.stop()
    assert statuses == [0x0000]
    assert len(destination.received) == 1
