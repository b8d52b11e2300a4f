"""Orthanc calling out, both ways documented in docs/gateway.md, run in a real Orthanc:

* the Lua auto-routing script (contrib/orthanc/autoroute.lua) sends stable series to the
  gateway, which checks them and forwards them back to the same Orthanc without looping;
* the Python plugin (contrib/orthanc/medforensics_plugin.py) uploads stable studies to the REST
  API, polls the analysis, logs the verdict and stores the SR, against a stand-in for the
  service that answers like the issue-8 API (multipart ``files``, ``X-API-Key``, statuses
  queued/running/done).
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from medforensics.gateway.app import Gateway
from medforensics.gateway.config import Destination, GatewayConfig, Policy
from tests.gateway import (
    DICOMWEB_PLUGIN,
    GATEWAY_AE,
    PYTHON_PLUGIN,
    Orthanc,
    free_port,
    have_orthanc,
    http_recorder,
    wait_for,
    write_phantom_series,
)

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "orthanc"
pytestmark = pytest.mark.pacs


@pytest.mark.slow
@pytest.mark.skipif(not have_orthanc(DICOMWEB_PLUGIN), reason="Orthanc needed")
def test_lua_autorouting_sends_new_series_through_the_gateway(tmp_path: Path) -> None:
    gateway_port = free_port()
    orthanc = Orthanc(
        tmp_path / "orthanc",
        extra={
            "LuaScripts": [str(CONTRIB / "autoroute.lua")],
            "DicomModalities": {"medforensics": [GATEWAY_AE, "127.0.0.1", gateway_port]},
            "StableAge": 1,
        },
    ).start()
    config = GatewayConfig(
        spool_dir=tmp_path / "spool",
        port=gateway_port,
        quiet_seconds=0.5,
        detector="metadata",  # what is checked does not matter here: the routing does
        destination=Destination(orthanc.ae_title, "127.0.0.1", orthanc.dicom_port),
        policy=Policy(attach=("sr",)),
    )
    gateway = Gateway(config)
    gateway.start()
    try:
        series = write_phantom_series(tmp_path / "ct", slices=3, size=64, seed=21)
        orthanc.upload(series)  # as a modality would, straight into Orthanc
        assert gateway.spool is not None
        spool = gateway.spool
        assert wait_for(lambda: spool.batch_ids("done"), 60), orthanc.log_text()[-2000:]
        assert gateway.wait_idle(30)
        # the series came back from the gateway, and our SR (if written) is stable too:
        # give Orthanc time to route again if it were going to loop
        time.sleep(2)
        assert gateway.wait_idle(30)
        batches = [spool.batch(b) for b in spool.batch_ids("done")]
    finally:
        gateway.stop()
        orthanc.stop()
    assert len(batches) == 1, "Orthanc routed the gateway's own output back to it"
    assert batches[0].calling_ae == orthanc.ae_title
    assert "medforensics autoroute" in orthanc.log_text()


def fake_service(sr: bytes) -> Any:
    """Answers like the issue-8 API: 202 on upload, running, then done with a verdict."""
    polls: dict[str, int] = {}

    def reply(method: str, path: str, body: bytes) -> Any:
        if method == "POST" and path == "/v1/analyses":
            return (202, "application/json", json.dumps({"id": "a1", "status": "queued"}).encode())
        if path == "/v1/analyses/a1/sr.dcm":
            return (200, "application/dicom", sr)
        if path == "/v1/analyses/a1":
            polls["a1"] = polls.get("a1", 0) + 1
            if polls["a1"] < 2:
                return {"id": "a1", "status": "running"}
            return {
                "id": "a1",
                "status": "done",
                "verdict": "manipulated",
                "score": 0.97,
                "result": {"results": [{"verdict": "manipulated", "score": 0.97}]},
            }
        return (404, "application/json", b"{}")

    return reply


def uploaded_zip(body: bytes, content_type: str) -> zipfile.ZipFile:
    boundary = content_type.split("boundary=")[1].encode()
    (part,) = [p for p in body.split(b"--" + boundary) if b"filename=" in p]
    headers, _sep, payload = part.partition(b"\r\n\r\n")
    assert b'name="files"' in headers and b"application/zip" in headers
    return zipfile.ZipFile(io.BytesIO(payload.removesuffix(b"\r\n")))


@pytest.fixture
def sr_object(tmp_path: Path) -> Iterator[tuple[bytes, str]]:
    """A stand-in result object from the service (Manufacturer medforensics)."""
    (path,) = write_phantom_series(tmp_path / "sr", slices=1, size=32, seed=23)
    ds = pydicom.dcmread(path)
    ds.Manufacturer = "medforensics"
    ds.SeriesDescription = "medforensics manipulation report (SR)"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    yield buffer.getvalue(), str(ds.SOPInstanceUID)


@pytest.mark.slow
@pytest.mark.skipif(not have_orthanc(PYTHON_PLUGIN), reason="Orthanc's Python plugin needed")
def test_python_plugin_sends_stable_studies_to_the_rest_api(
    tmp_path: Path, sr_object: tuple[bytes, str]
) -> None:
    sr_bytes, sr_uid = sr_object
    with http_recorder(fake_service(sr_bytes)) as service:
        orthanc = Orthanc(
            tmp_path / "orthanc",
            plugins=[PYTHON_PLUGIN],
            extra={
                "PythonScript": str(CONTRIB / "medforensics_plugin.py"),
                "StableAge": 1,
                "Medforensics": {"Url": service.url, "ApiKey": "k-123", "PollSeconds": 0.2},
            },
        ).start()
        try:
            assert wait_for(lambda: "medforensics plugin registered" in orthanc.log_text(), 10)
            series = write_phantom_series(tmp_path / "ct", slices=3, size=64, seed=22)
            orthanc.upload(series)
            assert wait_for(lambda: "is MANIPULATED" in orthanc.log_text(), 60), orthanc.log_text()[
                -3000:
            ]
            assert wait_for(lambda: sr_uid in orthanc.sop_instance_uids(), 10)
            # our SR makes the study stable again: the plugin must not check the series twice
            time.sleep(2.5)
            log = orthanc.log_text()
        finally:
            orthanc.stop()
        uploads = [r for r in service.requests if r[0] == "POST"]
    assert len(uploads) == 1, "the same series was uploaded more than once"
    _method, path, raw_headers, body = uploads[0]
    headers = {key.lower(): value for key, value in raw_headers.items()}
    assert path == "/v1/analyses" and headers["x-api-key"] == "k-123"
    archive = uploaded_zip(body, headers["content-type"])
    members = [name for name in archive.namelist() if not name.endswith("/")]
    assert len(members) == len(series)
    uids = {str(pydicom.dcmread(io.BytesIO(archive.read(m))).SOPInstanceUID) for m in members}
    assert uids == {str(pydicom.dcmread(p).SOPInstanceUID) for p in series}
    assert log.count("is MANIPULATED (score 0.97, analysis a1)") == 1
