"""Making the spool's index agree with its files after a crash (``Spool.recover``).

The files are the truth about what was acknowledged: an instance is answered 0x0000 only after
its file was renamed into ``incoming/`` and the rename fsynced. So after any crash:

* temp files in ``tmp/`` were never acknowledged: removed;
* an index row whose file never reached ``incoming/`` was never acknowledged: dropped;
* a file in ``incoming/`` without a row (crash between rename and commit): indexed;
* a batch folder the index does not know at all (a lost database): re-created from its files;
* batches still receiving reopen; complete and analysed ones are handed back to the caller.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from sqlalchemy import select

from medforensics.gateway import tables as t
from medforensics.gateway.spool import Spool
from medforensics.gateway.tables import GatewayBatch

LOGGER = logging.getLogger("medforensics.gateway.recovery")


@dataclass
class Recovery:
    """What ``recover`` found and did."""

    reopened: list[int] = field(default_factory=list)
    to_analyse: list[int] = field(default_factory=list)
    to_dispatch: list[int] = field(default_factory=list)
    indexed_orphans: int = 0
    dropped_unacknowledged: int = 0
    removed_temp_files: int = 0


def recover(spool: Spool) -> Recovery:
    """Repair the index from the files; returns what is left to do."""
    report = Recovery()
    for temp in spool.tmp.glob("*.part"):
        temp.unlink(missing_ok=True)
        report.removed_temp_files += 1
    _index_orphan_folders(spool)
    for batch_id in spool.batch_ids(t.RECEIVING):
        batch = spool.batch(batch_id)
        _reconcile(spool, batch, spool.batch_dir(batch), report)
        if not spool.instances(batch_id, role=t.IMAGE):
            spool.delete_batch(batch_id)
            continue
        spool.reopen(batch)
        report.reopened.append(batch_id)
    report.to_analyse = spool.batch_ids(t.COMPLETE)
    report.to_dispatch = spool.batch_ids(t.ANALYSED)
    return report


def _reconcile(spool: Spool, batch: GatewayBatch, folder: Path, report: Recovery) -> None:
    rows = {row.file_name: row for row in spool.instances(batch.id, role=t.IMAGE)}
    files = {p.name for p in folder.glob("*.dcm")} if folder.exists() else set()
    for name, row in rows.items():
        if name not in files:
            spool.drop_instance(batch.id, row.sop_uid)
            report.dropped_unacknowledged += 1
    for name in sorted(files - set(rows)):
        if _index_file(spool, batch.id, folder / name):
            report.indexed_orphans += 1


def _index_file(spool: Spool, batch_id: int, path: Path) -> bool:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        sop_uid, sop_class = str(ds.SOPInstanceUID), str(ds.SOPClassUID)
    except Exception as exc:  # a file we wrote ourselves: say so loudly and keep it
        spool.log_event("error", f"{path}: cannot be indexed after a crash: {exc}", batch_id)
        return False
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    return spool.add_instance(
        batch_id, sop_uid, sop_class, path.name, path.stat().st_mtime, len(data), digest
    )


def _index_orphan_folders(spool: Spool) -> None:
    """Batch folders in ``incoming/`` that the index does not know (a lost database)."""
    with spool.engine.connect() as connection:
        known = {int(v) for v in connection.execute(select(GatewayBatch.id)).scalars()}
    for folder in sorted((spool.root / t.IN_INCOMING).glob("*/*/*")):
        if not folder.is_dir() or not folder.name.isdigit() or int(folder.name) in known:
            continue
        files = sorted(folder.glob("*.dcm"))
        if not files:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        try:
            ds = pydicom.dcmread(files[0], stop_before_pixels=True)
            study_uid, series_uid = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
        except Exception as exc:
            spool.log_event("error", f"{folder}: unreadable spool folder left alone: {exc}")
            continue
        spool.create_batch(study_uid, series_uid, batch_id=int(folder.name))
        LOGGER.warning("re-indexed spool folder %s (its index rows were missing)", folder)
