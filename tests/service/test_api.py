"""Every endpoint in-process (httpx ASGI transport): the happy paths and their results."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pydicom
import pytest

from medforensics.service.logs import JsonFormatter
from tests.service.conftest import Api
from tests.service.inputs import (
    ct_series_files,
    dicom_radiograph,
    nifti_bytes,
    png_bytes,
    series_zip_bytes,
)

pytestmark = pytest.mark.anyio

CONTRACT_KEYS = {"input", "kind", "modality", "shape", "score", "verdict", "findings", "error"}


async def test_health_and_readiness(api: Api) -> None:
    health = await api.client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["ready"] and body["database"] and body["model_loaded"]
    assert body["workers_ready"] == body["workers_configured"] == 1
    assert body["queue_depth"] == 0


async def test_readyz_is_503_without_workers(api_factory) -> None:
    async with api_factory(workers=0) as api:
        ready = await api.client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["ready"] is False and body["database"] is True
    assert any("no workers" in problem for problem in body["problems"])


async def test_png_with_wait_answers_the_scan_contract(api: Api) -> None:
    response = await api.submit([("chest.png", png_bytes())], wait="true")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "done" and body["attempts"] == 1
    result = body["result"]
    assert result["tool"] == "medforensics" and "version" in result
    (entry,) = result["results"]
    assert set(entry) >= CONTRACT_KEYS
    assert entry["input"] == "chest.png" and entry["kind"] == "image"
    assert entry["shape"] == [1, 128, 128] and entry["detector"] == "noise-residual"
    assert body["verdict"] == entry["verdict"] and body["score"] == entry["score"]
    (stored,) = body["inputs"]
    assert stored["format"] == "png" and len(stored["sha256"]) == 64
    # the same analysis read back by id
    again = await api.client.get(body["links"]["self"], headers=api.auth())
    assert again.status_code == 200 and again.json()["result"] == result


async def test_submit_without_wait_is_202_then_done(api: Api, tmp_path: Path) -> None:
    dicom = dicom_radiograph(tmp_path).read_bytes()
    response = await api.submit([("dx.dcm", dicom)], modality="DX")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] in ("queued", "running", "done")
    assert response.headers["location"] == f"/v1/analyses/{body['id']}"
    assert set(body["links"]) == {"self", "report_pdf", "overlay_png", "sr_dcm"}
    done = await api.wait_done(body["id"])
    assert done["status"] == "done"
    (entry,) = done["result"]["results"]
    assert entry["kind"] == "dicom-series" and entry["modality"] == "DX"


async def test_dicom_files_of_one_series_are_one_result(api: Api, tmp_path: Path) -> None:
    files = ct_series_files(tmp_path / "ct", slices=5)
    response = await api.submit([(p.name, p.read_bytes()) for p in files], wait="true")
    assert response.status_code == 200, response.text
    (entry,) = response.json()["result"]["results"]
    assert entry["shape"] == [5, 64, 64] and entry["files"] == 5
    assert entry["input"] == "upload" and "/" not in (entry["location"] or "")


async def test_zip_of_a_series_and_nifti(api: Api, tmp_path: Path) -> None:
    archive = series_zip_bytes(tmp_path / "zipped", slices=4)
    response = await api.submit([("ct.zip", archive)], wait="true")
    assert response.status_code == 200, response.text
    body = response.json()
    (entry,) = body["result"]["results"]
    assert entry["shape"] == [4, 64, 64] and entry["input"] == "ct.zip"
    assert entry["location"].startswith("ct.zip!")  # not the server's temporary folder
    assert body["inputs"][0]["format"] == "zip"
    response = await api.submit([("brain.nii.gz", nifti_bytes(tmp_path))], wait="true")
    assert response.status_code == 200, response.text
    (entry,) = response.json()["result"]["results"]
    assert entry["kind"] == "nifti" and entry["shape"] == [4, 48, 40]


async def test_identical_uploads_are_stored_once(api: Api) -> None:
    data = png_bytes(seed=7)
    first = (await api.submit([("a.png", data)], wait="true")).json()
    second = (await api.submit([("b.png", data)], wait="true")).json()
    assert first["inputs"][0]["sha256"] == second["inputs"][0]["sha256"]
    blobs = [p for p in api.state.settings.blobs_dir.rglob("*") if p.is_file()]
    assert len(blobs) == 1


async def test_list_is_paginated_and_per_tenant(api: Api) -> None:
    ids = []
    for seed in range(3):
        response = await api.submit([(f"{seed}.png", png_bytes(seed=seed))])
        ids.append(response.json()["id"])
    other = api.new_key("beta")
    await api.submit([("beta.png", png_bytes(seed=9))], key=other)
    page = (await api.client.get("/v1/analyses?limit=2", headers=api.auth())).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    assert page["next"] == "/v1/analyses?limit=2&offset=2"
    rest = (await api.client.get(page["next"], headers=api.auth())).json()
    listed = [item["id"] for item in page["items"] + rest["items"]]
    assert sorted(listed) == sorted(ids) and rest["next"] is None
    beta = (await api.client.get("/v1/analyses", headers=api.auth(other))).json()
    assert beta["total"] == 1 and beta["items"][0]["id"] not in ids


async def test_models_lists_detectors_with_the_active_one(api: Api) -> None:
    response = await api.client.get("/v1/models", headers=api.auth())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["active"] == "noise-residual"
    by_name = {model["name"]: model for model in body["models"]}
    assert by_name["noise-residual"]["active"] and by_name["noise-residual"]["available"]
    assert by_name["noise-residual"]["description"]["name"] == "noise-residual"
    assert not by_name["classical"]["active"]


async def test_metrics_in_prometheus_text_format(api: Api) -> None:
    await api.submit([("m.png", png_bytes())], wait="true")
    await api.client.get("/v1/analyses", headers={"Authorization": "Bearer nope"})
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert "# TYPE medforensics_http_requests_total counter" in text
    assert 'route="/v1/analyses",status="200"' in text
    assert 'route="/v1/analyses",status="401"' in text
    assert 'medforensics_http_request_duration_seconds_bucket{method="POST"' in text
    assert 'medforensics_analyses{status="done"} 1' in text
    assert "medforensics_queue_depth 0" in text
    assert 'medforensics_analyses_finished_total{status="done",verdict=' in text
    assert "medforensics_analysis_duration_seconds_count 1" in text
    assert 'medforensics_workers{state="ready"} 1' in text


async def test_artefacts_pdf_overlay_and_sr(api_factory, tmp_path: Path) -> None:
    pytest.importorskip("medforensics.report.build")
    async with api_factory(reports=True) as api:
        dicom = ct_series_files(tmp_path / "ct", slices=4)
        body = (
            await api.submit([(p.name, p.read_bytes()) for p in dicom], wait="true", timeout=60)
        ).json()
        assert body["status"] == "done", body
        links = body["links"]
        pdf = await api.client.get(links["report_pdf"], headers=api.auth())
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        assert pdf.headers["content-type"] == "application/pdf"
        overlay = await api.client.get(links["overlay_png"], headers=api.auth())
        assert overlay.status_code == 200 and overlay.content.startswith(b"\x89PNG")
        sr = await api.client.get(links["sr_dcm"], headers=api.auth())
        assert sr.status_code == 200 and sr.content[128:132] == b"DICM"
        missing = await api.client.get(f"{links['report_pdf']}?result=3", headers=api.auth())
        assert missing.status_code == 404 and "no result 3" in missing.json()["detail"]
        # a PNG has a PDF report but no DICOM SR: 404 saying why
        png = (await api.submit([("x.png", png_bytes())], wait="true")).json()
        no_sr = await api.client.get(png["links"]["sr_dcm"], headers=api.auth())
        assert no_sr.status_code == 404
        assert "DICOM" in no_sr.json()["detail"]
        with_pdf = await api.client.get(png["links"]["report_pdf"], headers=api.auth())
        assert with_pdf.status_code == 200


async def test_artefact_of_an_unfinished_analysis_is_409(api_factory) -> None:
    async with api_factory(workers=0) as api:
        body = (await api.submit([("q.png", png_bytes())])).json()
        assert body["status"] == "queued"
        response = await api.client.get(body["links"]["report_pdf"], headers=api.auth())
        assert response.status_code == 409 and "queued" in response.json()["detail"]


async def test_openapi_schema_is_published(api: Api) -> None:
    schema = (await api.client.get("/openapi.json")).json()
    paths = schema["paths"]
    for path in (
        "/v1/analyses",
        "/v1/analyses/{analysis_id}",
        "/v1/analyses/{analysis_id}/report.pdf",
        "/v1/analyses/{analysis_id}/overlay.png",
        "/v1/analyses/{analysis_id}/sr.dcm",
        "/v1/models",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    body = paths["/v1/analyses"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body
    assert {"HTTPBearer", "APIKeyHeader"} <= set(schema["components"]["securitySchemes"])


async def test_logs_are_json_without_file_names(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="medforensics.service")
    await api.submit([("DOE_JOHN_1970.png", png_bytes())], wait="true")
    formatter = JsonFormatter()
    lines = [formatter.format(record) for record in caplog.records]
    events = [json.loads(line) for line in lines]
    names = {event["event"] for event in events}
    assert {"analysis.queued", "analysis.started", "analysis.done", "http.request"} <= names
    assert not any("DOE_JOHN" in line for line in lines)
    queued = next(event for event in events if event["event"] == "analysis.queued")
    assert len(queued["inputs"][0]) == 12  # a hash prefix, not the name


async def test_log_phi_setting_allows_file_names(
    api_factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="medforensics.service")
    async with api_factory(log_phi=True) as api:
        await api.submit([("DOE_JOHN_1970.png", png_bytes())], wait="true")
    assert any("DOE_JOHN_1970.png" in JsonFormatter().format(r) for r in caplog.records)


async def test_sr_written_for_dicom_names_the_series(api_factory, tmp_path: Path) -> None:
    pytest.importorskip("medforensics.report.dicom")
    async with api_factory(reports=True) as api:
        path = dicom_radiograph(tmp_path)
        body = (await api.submit([("dx.dcm", path.read_bytes())], wait="true")).json()
        sr = await api.client.get(body["links"]["sr_dcm"], headers=api.auth())
    assert sr.status_code == 200
    dataset = pydicom.dcmread(__import__("io").BytesIO(sr.content))
    assert dataset.Modality == "SR"
