"""Receive → analyse → forward / quarantine / alert, against a destination SCP in this process.

The detector is ``classical`` on 128×128×12 chest phantoms: it calls every authentic phantom we
tried authentic (score ≈ 0.43-0.46) and flags the simulator's copy-move on them (≈ 0.91-0.99),
thanks to its exact-repeat cue; ``ct-local`` and ``auto``-without-classical miss copy-move and
splice on phantoms this small, so they would not make an honest test of quarantine.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pydicom
import pytest
from typer.testing import CliRunner

from medforensics.cli.main import build_app
from medforensics.detect import Detector, create_detector
from medforensics.detect.types import Detection
from medforensics.gateway import tables as t
from medforensics.gateway.app import Gateway
from medforensics.gateway.config import Destination, GatewayConfig, Policy
from medforensics.gateway.status import read_status
from medforensics.io.types import ImageVolume
from medforensics.provenance.audit import AuditLog
from tests.gateway import (
    CountingSCP,
    associate,
    free_port,
    http_recorder,
    wait_for,
    write_copy_move_series,
    write_phantom_series,
)

pytest.importorskip("pynetdicom")


class RecordingDetector(Detector):
    """``classical``, noting which thread each analysis ran on."""

    name: ClassVar[str] = "recording-classical"
    threads: ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.inner = create_detector("classical")

    def detect(self, volume: ImageVolume) -> Detection:
        RecordingDetector.threads.append(threading.current_thread().name)
        return self.inner.detect(volume)

    def describe(self) -> dict[str, object]:
        return self.inner.describe()


@pytest.fixture
def destination() -> Iterator[CountingSCP]:
    peer = CountingSCP().start()
    yield peer
    peer.stop()


def start(tmp_path: Path, destination: CountingSCP | None, **settings: Any) -> Gateway:
    values: dict[str, Any] = {
        "spool_dir": tmp_path / "spool",
        "port": 0,
        "quiet_seconds": 0.5,
        "detector": "classical",
        "retry_max_s": 1.0,
        **settings,
    }
    if destination is not None:
        values["destination"] = Destination(destination.ae_title, "127.0.0.1", destination.port)
    gateway = Gateway(GatewayConfig(**values), detector_factory=RecordingDetector)
    gateway.start()
    return gateway


def send(gateway: Gateway, paths: list[Path]) -> list[int]:
    assert gateway.address is not None
    assoc = associate(gateway.address[1])
    statuses = [int(assoc.send_c_store(path).Status) for path in paths]
    assoc.release()
    return statuses


def sop_uids(paths: list[Path]) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}


def test_authentic_series_is_forwarded_with_results(
    tmp_path: Path, destination: CountingSCP
) -> None:
    series = write_phantom_series(tmp_path / "authentic", seed=1)
    RecordingDetector.threads.clear()
    gateway = start(tmp_path, destination)
    try:
        assert send(gateway, series) == [0] * len(series)
        assert gateway.wait_idle(60)
        assert gateway.spool is not None
        batch = gateway.spool.batch(1)
        assert (batch.outcome, batch.state) == ("authentic", t.DONE)
        status = read_status(gateway.spool.engine, gateway.spool.root)
        audit = AuditLog(gateway.spool.engine)
        entries = audit.entries()
        audit_ok = audit.verify().ok
    finally:
        gateway.stop()
    # every analysis is in the hash-chained audit log, with the spooled files' hashes
    assert len(entries) == 1 and audit_ok
    assert entries[0].actor.startswith("gateway:") and entries[0].result["verdict"] == "authentic"
    assert len(entries[0].inputs) == len(series)
    # analysis ran on the worker pool, never on an association thread
    assert RecordingDetector.threads and all(
        name.startswith("gateway-analysis") for name in RecordingDetector.threads
    )
    originals = sop_uids(series)
    assert originals <= set(destination.received)
    assert len(destination.received) == len(set(destination.received)), "sent twice"
    assert status.received == status.forwarded == len(series)
    assert status.quarantined == 0 and sum(status.pending_series.values()) == 0
    assert not list((tmp_path / "spool" / "incoming").rglob("*.dcm")), "forwarded files stay"
    extra = [ds for ds in destination.datasets if str(ds.SOPInstanceUID) not in originals]
    assert {ds.Modality for ds in extra} >= {"SR"}
    assert all(str(ds.Manufacturer) == "medforensics" for ds in extra)
    assert status.results_forwarded == len(extra)


def test_tampered_series_is_quarantined_and_alerted(
    tmp_path: Path, destination: CountingSCP
) -> None:
    tampered = write_copy_move_series(tmp_path / "tampered", seed=2)
    with http_recorder() as hook:
        gateway = start(tmp_path, destination, webhook_url=hook.url + "/alerts")
        try:
            assert send(gateway, tampered) == [0] * len(tampered)
            assert gateway.wait_idle(60)
        finally:
            gateway.stop()
        assert len(hook.requests) == 1
        method, path, headers, body = hook.requests[0]
    assert method == "POST" and path == "/alerts" and headers["Content-Type"] == "application/json"
    alert = json.loads(body)
    assert alert["event"] == "medforensics.gateway.flagged"
    assert alert["outcome"] == "manipulated" and alert["score"] >= 0.5
    assert alert["actions"] == ["quarantine", "alert"]
    assert alert["findings"] and alert["quarantine"]
    assert "PatientName" not in body.decode() and "PHANTOM" not in body.decode()
    assert destination.received == [], "a manipulated series reached the PACS"
    quarantine = Path(alert["quarantine"])
    assert sop_uids(sorted(quarantine.glob("*.dcm"))) == sop_uids(tampered)
    verdict = json.loads((quarantine / "verdict.json").read_text())
    assert verdict["outcome"] == "manipulated" and verdict["results"][0]["verdict"] == "manipulated"


def test_destination_down_defers_then_forwards(tmp_path: Path) -> None:
    series = write_phantom_series(tmp_path / "series", slices=4, size=64, seed=3)
    peer = CountingSCP(port=free_port())
    config: dict[str, Any] = {"policy": Policy(actions={"inconclusive": ("forward",)})}
    gateway = start(tmp_path, peer, **config)  # nobody listens on the destination port yet
    try:
        assert send(gateway, series) == [0] * len(series)
        assert gateway.spool is not None
        spool = gateway.spool
        assert wait_for(lambda: read_status(spool.engine, spool.root).failed_series == 1, 30)
        status = read_status(spool.engine, spool.root)
        assert "did not accept an association" in (status.pending[0].last_error or "")
        assert status.last_errors and status.forwarded == 0
        peer.start()
        assert gateway.wait_idle(60)
        status = read_status(spool.engine, spool.root)
    finally:
        gateway.stop()
        peer.stop()
    assert sop_uids(series) == set(peer.received) and status.forwarded == len(series)
    assert status.failed_series == 0


def test_refused_instances_end_in_quarantine(tmp_path: Path, destination: CountingSCP) -> None:
    series = write_phantom_series(tmp_path / "series", slices=3, size=64, seed=4)
    destination.status = 0xC000  # "cannot understand": a refusal for good
    config: dict[str, Any] = {"policy": Policy(actions={"inconclusive": ("forward",)})}
    gateway = start(tmp_path, destination, **config)
    try:
        send(gateway, series)
        assert gateway.wait_idle(60)
        assert gateway.spool is not None
        status = read_status(gateway.spool.engine, gateway.spool.root)
        batch = gateway.spool.batch(1)
    finally:
        gateway.stop()
    assert status.rejected == status.quarantined == len(series)
    assert batch.location == t.IN_QUARANTINE
    (listed,) = status.quarantine
    assert listed["batch"] == 1 and Path(listed["path"]).is_dir()
    assert len(list(Path(listed["path"]).glob("*.dcm"))) == len(series)
    assert any("0xC000" in e["message"] for e in status.last_errors)


def test_our_own_results_pass_through_unanalysed(tmp_path: Path, destination: CountingSCP) -> None:
    series = write_phantom_series(tmp_path / "ours", slices=2, size=64, seed=5)
    for path in series:
        ds = pydicom.dcmread(path)
        ds.Manufacturer = "medforensics"
        ds.save_as(path)
    RecordingDetector.threads.clear()
    gateway = start(tmp_path, destination)
    try:
        send(gateway, series)
        assert gateway.wait_idle(30)
        assert gateway.spool is not None
        assert gateway.spool.batch(1).outcome == "passthrough"
    finally:
        gateway.stop()
    assert RecordingDetector.threads == []
    assert set(destination.received) == sop_uids(series)


def test_status_command(tmp_path: Path, destination: CountingSCP) -> None:
    series = write_phantom_series(tmp_path / "series", slices=2, size=64, seed=6)
    config: dict[str, Any] = {"policy": Policy(actions={"inconclusive": ("forward",)})}
    gateway = start(tmp_path, destination, **config)
    try:
        send(gateway, series)
        assert gateway.wait_idle(30)
    finally:
        gateway.stop()
    runner = CliRunner()
    app = build_app()
    shown = runner.invoke(app, ["gateway", "status", "--spool", str(tmp_path / "spool")])
    assert shown.exit_code == 0, shown.output
    assert "received 2" in shown.output and "forwarded 2" in shown.output
    as_json = runner.invoke(
        app, ["gateway", "status", "--spool", str(tmp_path / "spool"), "--json", "-"]
    )
    payload = json.loads(as_json.stdout)
    assert payload["received"] == payload["forwarded"] == 2 and payload["series_done"] == 1
    missing = runner.invoke(app, ["gateway", "status", "--spool", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no gateway spool" in " ".join(missing.output.split())
