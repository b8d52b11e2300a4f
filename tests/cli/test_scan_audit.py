"""``scan --audit``: every analysis lands in the hash-chained audit log with its input hashes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from medforensics.cli.main import build_app
from medforensics.db import make_engine
from medforensics.provenance.audit import AuditLog
from tests.conftest import WrittenSeries


def test_scan_audit_records_each_analysis_with_file_hashes(
    tmp_path: Path,
    ct_series: WrittenSeries,
    constant_detector: Callable[[str], str],
) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"DICM but not really" * 10)
    name = constant_detector("manipulated")
    args = ["scan", str(ct_series.folder), str(broken), "--detector", name]
    outcome = CliRunner().invoke(build_app(), [*args, "--audit", "--db", url, "-q"])

    assert outcome.exit_code == 2  # the unreadable file is an error, the series still analysed
    log = AuditLog(make_engine(url))
    entries = log.entries(newest_first=False)
    assert len(entries) == 1  # one analysis; a file that could not be read is not an analysis
    entry = entries[0]
    assert entry.action == "scan" and entry.actor.startswith("cli:")
    expected = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in ct_series.paths}
    assert entry.inputs == expected
    assert entry.result["verdict"] == "manipulated"
    assert log.verify().ok

    again = CliRunner().invoke(
        build_app(), ["scan", str(ct_series.folder), "--detector", name, "--audit", "--db", url]
    )
    assert again.exit_code == 1
    assert len(log.entries()) == 2 and log.verify().ok  # the chain grows, still unbroken


def test_scan_without_audit_writes_no_database(
    tmp_path: Path, ct_series: WrittenSeries, constant_detector: Callable[[str], str]
) -> None:
    name = constant_detector("authentic")
    env = {"MEDFORENSICS_DATA": str(tmp_path / "data")}
    outcome = CliRunner().invoke(
        build_app(), ["scan", str(ct_series.folder), "--detector", name, "-q"], env=env
    )
    assert outcome.exit_code == 0
    assert not (tmp_path / "data").exists()
