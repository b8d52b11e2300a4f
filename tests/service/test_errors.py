"""Every error answer in-process: 401, 403, 404, 408, 409, 410, 413, 415, 422, 429."""

from __future__ import annotations

import uuid
import zipfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.service.conftest import Api
from tests.service.inputs import png_bytes, series_zip_bytes, zip_bytes

pytestmark = pytest.mark.anyio


# -- 401 / 403: keys ---------------------------------------------------------------------------


async def test_401_without_or_with_a_bad_key(api: Api) -> None:
    missing = await api.client.get("/v1/analyses")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "API key is required" in missing.json()["detail"]
    malformed = await api.client.get("/v1/analyses", headers={"Authorization": "Bearer xyz"})
    assert malformed.status_code == 401 and "malformed" in malformed.json()["detail"]
    key_id = api.key.split("_")[1]
    forged = f"mf_{key_id}_{'A' * 43}"
    wrong = await api.client.get("/v1/analyses", headers={"X-API-Key": forged})
    assert wrong.status_code == 401 and "not valid" in wrong.json()["detail"]
    unknown = await api.client.get("/v1/models", headers={"X-API-Key": f"mf_{'0' * 12}_{'A' * 43}"})
    assert unknown.status_code == 401
    post = await api.client.post("/v1/analyses", files={"files": ("a.png", png_bytes())})
    assert post.status_code == 401


async def test_x_api_key_header_works_too(api: Api) -> None:
    response = await api.client.get("/v1/analyses", headers={"X-API-Key": api.key})
    assert response.status_code == 200


async def test_403_for_a_revoked_key(api: Api) -> None:
    created = api.state.keys.create("alpha")
    assert (await api.client.get("/v1/models", headers=api.auth(created.token))).status_code == 200
    assert api.state.keys.revoke(created.key_id)
    response = await api.client.get("/v1/models", headers=api.auth(created.token))
    assert response.status_code == 403 and "revoked" in response.json()["detail"]
    assert not api.state.keys.revoke(created.key_id)  # already revoked


async def test_403_for_a_read_only_key_submitting(api: Api) -> None:
    reader = api.new_key("alpha", scopes=("read",))
    response = await api.submit([("a.png", png_bytes())], key=reader)
    assert response.status_code == 403 and "'write' permission" in response.json()["detail"]
    assert (await api.client.get("/v1/analyses", headers=api.auth(reader))).status_code == 200


# -- 404: tenant isolation ---------------------------------------------------------------------


async def test_404_for_another_tenants_analysis_and_unknown_ids(api: Api) -> None:
    body = (await api.submit([("a.png", png_bytes())], wait="true")).json()
    intruder = api.new_key("beta")
    for link in body["links"].values():
        response = await api.client.get(link, headers=api.auth(intruder))
        assert response.status_code == 404, link
        assert "no analysis" in response.json()["detail"]
    same_tenant = api.new_key("alpha")
    assert (await api.client.get(body["links"]["self"], headers=api.auth(same_tenant))).is_success
    unknown = await api.client.get(f"/v1/analyses/{uuid.uuid4()}", headers=api.auth())
    assert unknown.status_code == 404


# -- 413: sizes and zip bombs ------------------------------------------------------------------


async def test_413_when_content_length_is_over_the_limit(api_factory) -> None:
    async with api_factory(upload_limit_bytes=50_000) as api:
        response = await api.submit([("big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 60_000)])
        assert response.status_code == 413
        assert "larger than the limit" in response.json()["detail"]
        assert list(api.state.settings.blobs_dir.rglob("*")) == []


async def test_413_for_a_chunked_upload_without_content_length(api_factory) -> None:
    boundary = "testboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    async def body() -> AsyncIterator[bytes]:
        yield head + b"\x89PNG\r\n\x1a\n"
        for _ in range(20):
            yield b"\0" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    async with api_factory(upload_limit_bytes=50_000) as api:
        response = await api.client.post(
            "/v1/analyses",
            content=body(),
            headers={**api.auth(), "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert response.status_code == 413, response.text
        assert "content-length" not in {k.lower() for k in response.request.headers}


async def test_413_for_zip_bombs_and_too_many_members(api_factory) -> None:
    bomb = zip_bytes({"a.dcm": b"\0" * (8 * 2**20)})  # 8 MiB of zeros packs ~1000x
    async with api_factory(zip_max_members=10) as api:
        response = await api.submit([("bomb.zip", bomb)])
        assert response.status_code == 413 and "zip bomb" in response.json()["detail"]
        crowded = zip_bytes({f"f{i}.dcm": b"x" for i in range(11)})
        response = await api.submit([("crowded.zip", crowded)])
        assert response.status_code == 413 and "11 members" in response.json()["detail"]


async def test_413_when_a_zip_declares_too_much(api_factory, tmp_path: Path) -> None:
    archive = series_zip_bytes(tmp_path / "s", slices=3)
    async with api_factory(zip_max_total_bytes=10_000) as api:
        response = await api.submit([("ct.zip", archive)])
    assert response.status_code == 413 and "uncompressed" in response.json()["detail"]


# -- 415: content sniffing ---------------------------------------------------------------------


async def test_415_for_content_that_is_not_an_image_whatever_its_name(api: Api) -> None:
    for name in ("scan.dcm", "chest.png", "brain.nii.gz", "x.jpg"):
        response = await api.submit([(name, b"%PDF-1.7 definitely not an image " * 50)])
        assert response.status_code == 415, name
        assert f"file '{name}'" in response.json()["detail"]
    empty = await api.submit([("empty.png", b"")])
    assert empty.status_code == 415 and "empty" in empty.json()["detail"]
    # one bad file refuses the whole submission, and nothing is stored
    mixed = await api.submit([("ok.png", png_bytes()), ("bad.png", b"GIF89a" + b"\0" * 100)])
    assert mixed.status_code == 415
    assert [p for p in api.state.settings.blobs_dir.rglob("*") if p.is_file()] == []


async def test_415_for_a_zip_without_images_and_for_non_multipart(api: Api) -> None:
    archive = zip_bytes({"readme.txt": b"hello", "notes/a.txt": b"world"})
    response = await api.submit([("docs.zip", archive)])
    assert response.status_code == 415 and "no DICOM" in response.json()["detail"]
    raw = await api.client.post(
        "/v1/analyses", content=png_bytes(), headers={**api.auth(), "Content-Type": "image/png"}
    )
    assert raw.status_code == 415 and "multipart/form-data" in raw.json()["detail"]


# -- 422: parameters and unsafe archives -------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/v1/analyses/not-a-uuid", "analysis_id"),
        ("/v1/analyses?limit=0", "limit"),
        ("/v1/analyses?limit=101", "limit"),
        ("/v1/analyses?offset=-1", "offset"),
        ("/v1/analyses?status=finished", "status"),
        (f"/v1/analyses/{uuid.UUID(int=1)}/report.pdf?result=-1", "result"),
    ],
)
async def test_422_for_bad_parameters(api: Api, path: str, fragment: str) -> None:
    response = await api.client.get(path, headers=api.auth())
    assert response.status_code == 422, response.text
    assert fragment in response.text


async def test_422_for_bad_submission_parameters(api: Api) -> None:
    for params in ({"modality": "ct; drop"}, {"timeout": "0"}, {"wait": "perhaps"}):
        response = await api.submit([("a.png", png_bytes())], **params)
        assert response.status_code == 422, params
    nothing = await api.client.post(
        "/v1/analyses", data={"note": "no files"}, files={}, headers=api.auth()
    )
    assert nothing.status_code in (415, 422)
    empty_form = await api.client.post(
        "/v1/analyses",
        content=b"--b--\r\n",
        headers={**api.auth(), "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert empty_form.status_code == 422 and "no file" in empty_form.json()["detail"]


async def test_422_for_path_traversal_and_nested_zips(api: Api) -> None:
    image = png_bytes()
    for member in ("../../etc/evil.png", "/abs/evil.png", "..\\evil.png"):
        archive = zip_bytes({member: image})
        response = await api.submit([("evil.zip", archive)])
        assert response.status_code == 422, member
        assert "outside the archive folder" in response.json()["detail"]
    nested = zip_bytes({"inner.zip": zip_bytes({"a.png": image})})
    response = await api.submit([("nested.zip", nested)])
    assert response.status_code == 422 and "zips inside zips" in response.json()["detail"]
    damaged = zip_bytes({"a.png": image})[:-30]
    response = await api.submit([("damaged.zip", damaged)])
    assert response.status_code == 422 and "cannot be read" in response.json()["detail"]


async def test_422_for_symlinks_and_encrypted_members(api: Api) -> None:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (0o120777 << 16) | 0
        archive.writestr(link, "/etc/passwd")
    response = await api.submit([("links.zip", buffer.getvalue())])
    assert response.status_code == 422 and "symbolic link" in response.json()["detail"]


async def test_422_for_too_many_files(api_factory) -> None:
    async with api_factory(max_files=2) as api:
        image = png_bytes()
        response = await api.submit([(f"{i}.png", image) for i in range(3)])
    assert response.status_code == 422 and "files" in response.json()["detail"].lower()


# -- 429: rate limit and full queue ------------------------------------------------------------


async def test_429_when_the_keys_rate_is_spent(api: Api) -> None:
    slow_key = api.new_key("alpha", rate_per_min=2)
    codes = [
        (await api.client.get("/v1/analyses", headers=api.auth(slow_key))).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]
    limited = await api.client.get("/v1/analyses", headers=api.auth(slow_key))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 30
    assert "2 requests per minute" in limited.json()["detail"]
    # other keys are not affected
    assert (await api.client.get("/v1/analyses", headers=api.auth())).status_code == 200


async def test_429_when_the_queue_is_full(api_factory) -> None:
    async with api_factory(workers=0, queue_limit=2) as api:
        for seed in range(2):
            assert (await api.submit([(f"{seed}.png", png_bytes(seed=seed))])).status_code == 202
        full = await api.submit([("late.png", png_bytes(seed=5))])
        assert full.status_code == 429
        assert int(full.headers["retry-after"]) >= 1
        assert "queue is full" in full.json()["detail"]
        metrics = (await api.client.get("/metrics")).text
        assert 'medforensics_submissions_rejected_total{reason="queue_full"} 1' in metrics
        assert "medforensics_queue_depth 2" in metrics


# -- 410: purged after retention ----------------------------------------------------------------


async def test_retention_purges_inputs_and_artefacts_but_keeps_rows(api_factory) -> None:
    pytest.importorskip("medforensics.report.build")
    import os

    from sqlalchemy import update

    from medforensics.service.models import Analysis, utcnow
    from medforensics.service.state import purge_expired

    async with api_factory(reports=True, retention_days=7) as api:
        old = (await api.submit([("old.png", png_bytes(seed=1))], wait="true")).json()
        new = (await api.submit([("new.png", png_bytes(seed=2))], wait="true")).json()
        with api.state.store.session() as session, session.begin():
            session.execute(
                update(Analysis)
                .where(Analysis.id == old["id"])
                .values(finished_at=utcnow() - timedelta(days=30))
            )
        for digest in (old["inputs"][0]["sha256"], new["inputs"][0]["sha256"]):
            blob = api.state.blobs.path_for(digest)
            os.utime(blob, (blob.stat().st_atime - 7200, blob.stat().st_mtime - 7200))
        assert purge_expired(api.state) == {"analyses": 1, "inputs": 1}
        assert not api.state.blobs.exists(old["inputs"][0]["sha256"])
        assert api.state.blobs.exists(new["inputs"][0]["sha256"])
        gone = await api.client.get(old["links"]["report_pdf"], headers=api.auth())
        assert gone.status_code == 410 and "retention" in gone.json()["detail"]
        kept = (await api.client.get(old["links"]["self"], headers=api.auth())).json()
        assert kept["purged_at"] is not None and kept["result"] is not None
        assert kept["inputs"][0]["sha256"] == old["inputs"][0]["sha256"]
        assert (await api.client.get(new["links"]["report_pdf"], headers=api.auth())).is_success
