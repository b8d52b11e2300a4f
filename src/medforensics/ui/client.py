"""REST mode (``medforensics ui --api URL``): the app posts uploads to ``medforensics serve``.

A thin client of the API in docs/service.md: submit (``POST /v1/analyses?wait=true``), poll
until done, fetch the PDF, overlay and DICOM SR of each result. The service's answers become
the same ``Analysis`` objects local analysis gives, so the pages do not care where they came
from (the viewer then has the service's overlay picture instead of the volume).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from medforensics.scan import ResultFinding, ScanResult
from medforensics.ui.analysis import (
    MIME,
    AnalysedItem,
    Analysis,
    Download,
    Progress,
    Reports,
    download_stem,
    item_name,
    sources_label,
    upload_hashes,
)
from medforensics.ui.session import Upload
from medforensics.utils.optional import require

#: the service's artefacts: (path, button label, MIME key)
ARTEFACTS = (
    ("report.pdf", "PDF report", "pdf"),
    ("sr.dcm", "DICOM SR", "dcm"),
)


class ServiceError(RuntimeError):
    """The analysis service could not be reached or refused the request; says which and why."""


def result_from_dict(payload: dict[str, Any]) -> ScanResult:
    """A scan-contract result (``results[]`` entry) as a ``ScanResult``; unknown keys ignored."""
    known = set(ScanResult.__dataclass_fields__)
    values = {key: value for key, value in payload.items() if key in known}
    finding_keys = set(ResultFinding.__dataclass_fields__)
    values["findings"] = [
        ResultFinding(**{k: v for k, v in finding.items() if k in finding_keys})
        for finding in payload.get("findings") or []
    ]
    for key in ("input", "kind", "modality", "shape", "score", "verdict"):
        values.setdefault(key, None)
    values["input"] = values["input"] or "(unnamed)"
    return ScanResult(**values)


class ServiceClient:
    """Talks to one ``medforensics serve`` instance.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000``.
        api_key: sent as ``Authorization: Bearer``; None sends none (the service answers 401).
        http: an ``httpx.Client`` to use instead of a new one (tests pass FastAPI's TestClient).
        timeout_s: per request.
        wait_s: longest time an analysis is waited for.
        poll_s: pause between status requests.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        http: Any = None,
        timeout_s: float = 120.0,
        wait_s: float = 900.0,
        poll_s: float = 0.5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if http is None:
            httpx = require("httpx", "the web app's REST mode")
            http = httpx.Client(base_url=self.base_url, timeout=timeout_s)
        self.http = http
        self.headers = headers
        self.wait_s = wait_s
        self.poll_s = poll_s

    def _request(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, headers=self.headers, **kwargs)
        except Exception as exc:  # httpx.HTTPError and its kin: the service is not there
            raise ServiceError(
                f"could not reach the analysis service at {self.base_url} to {what} "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        return response

    @staticmethod
    def _detail(response: Any) -> str:
        try:
            return str(response.json().get("detail") or response.text)
        except (ValueError, AttributeError):
            return str(response.text)[:300]

    def _json(self, response: Any, what: str) -> dict[str, Any]:
        if response.status_code >= 400:
            raise ServiceError(
                f"the analysis service refused to {what} (HTTP {response.status_code}): "
                f"{self._detail(response)}"
            )
        try:
            return dict(response.json())
        except ValueError as exc:
            raise ServiceError(f"the analysis service answered {what} with invalid JSON") from exc

    def models(self) -> dict[str, Any]:
        """``GET /v1/models``: every detector's card and which one is active."""
        return self._json(self._request("GET", "/v1/models", "list its models"), "list models")

    def submit(self, uploads: Sequence[Upload], modality: str | None = None) -> dict[str, Any]:
        """``POST /v1/analyses?wait=true``: the analysis, done when small and quick, else queued."""
        files = [("files", (u.name, u.data, "application/octet-stream")) for u in uploads]
        params: dict[str, Any] = {"wait": "true"}
        if modality:
            params["modality"] = modality
        response = self._request(
            "POST", "/v1/analyses", "submit the upload", files=files, params=params
        )
        return self._json(response, "accept the upload")

    def status(self, analysis_id: str) -> dict[str, Any]:
        response = self._request("GET", f"/v1/analyses/{analysis_id}", "ask for the result")
        return self._json(response, "report the analysis")

    def wait(self, analysis: dict[str, Any], progress: Progress | None = None) -> dict[str, Any]:
        """Poll until the analysis is ``done`` or ``failed``."""
        deadline = time.monotonic() + self.wait_s
        while analysis.get("status") not in ("done", "failed"):
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"the analysis service has not finished analysis {analysis.get('id')} after "
                    f"{self.wait_s:.0f} s; it is still {analysis.get('status')}"
                )
            if progress is not None:
                progress(f"The service has the analysis {analysis.get('status')}…")
            time.sleep(self.poll_s)
            analysis = self.status(str(analysis["id"]))
        return analysis

    def artefact(self, analysis_id: str, name: str, result_index: int) -> tuple[bytes | None, str]:
        """An artefact's bytes, or None and the service's reason (e.g. no SR for a PNG)."""
        response = self._request(
            "GET",
            f"/v1/analyses/{analysis_id}/{name}",
            f"fetch {name}",
            params={"result": result_index},
        )
        if response.status_code == 200:
            return bytes(response.content), ""
        return None, f"{name}: {self._detail(response)}"


def remote_analysis(
    client: ServiceClient, uploads: Sequence[Upload], progress: Progress | None = None
) -> Analysis:
    """Analyse ``uploads`` on the service; results, overlay and downloads as local ones."""
    started = time.perf_counter()
    say = progress or (lambda _text: None)
    sources = [upload.name for upload in uploads]
    say(f"Sending {sources_label(sources)} to {client.base_url}")
    view = client.wait(client.submit(uploads), say)
    analysis = Analysis(
        id=uuid.uuid4().hex[:8],
        sources=sources,
        items=[],
        upload_sha256=upload_hashes(uploads),
    )
    if view.get("status") == "failed":
        failed = ScanResult(
            input=sources_label(sources),
            kind=None,
            modality=None,
            shape=None,
            score=None,
            verdict=None,
            error=f"the analysis service could not analyse it: {view.get('error')}",
        )
        analysis.items.append(AnalysedItem(1, failed.input, failed))
        return analysis
    contract = view.get("result") or {}
    cards = _cards(client, str(view.get("detector", "")))
    for index, payload in enumerate(contract.get("results") or []):
        result = result_from_dict(payload)  # the service names inputs as they were uploaded
        item = AnalysedItem(index + 1, item_name(result), result, remote_id=str(view["id"]))
        item.described = cards
        item.models = [{"name": result.detector or view.get("detector"), **_summary(cards)}]
        if not result.failed:
            _fetch(client, item, index, contract)
        analysis.items.append(item)
    analysis.seconds = time.perf_counter() - started
    return analysis


def _cards(client: ServiceClient, active: str) -> dict[str, Any]:
    try:
        listed = client.models()
    except ServiceError as exc:
        return {"name": active, "problem": str(exc)}
    for model in listed.get("models") or []:
        if model.get("active") or model.get("name") == active:
            return dict(model.get("description") or {"name": model.get("name")})
    return {"name": active}


def _summary(card: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in card.items() if isinstance(value, str | int | float)}


def _fetch(client: ServiceClient, item: AnalysedItem, index: int, contract: dict[str, Any]) -> None:
    assert item.remote_id is not None
    notes = []
    overlay, reason = client.artefact(item.remote_id, "overlay.png", index)
    item.overlay_png = overlay
    if overlay is None:
        notes.append(reason)
    stem = download_stem(item.name)
    downloads = []
    for name, label, kind in ARTEFACTS:
        data, reason = client.artefact(item.remote_id, name, index)
        if data is None:
            notes.append(reason)
            continue
        file_name = f"{stem}.sr.dcm" if kind == "dcm" else f"{stem}.{kind}"
        downloads.append(Download(label, file_name, data, MIME[kind]))
    payload = {
        "tool": contract.get("tool", "medforensics"),
        "version": contract.get("version"),
        "results": [item.result.to_dict()],
        "skipped": [],
    }
    downloads.append(
        Download(
            "JSON result",
            f"{stem}.result.json",
            (json.dumps(payload, indent=2) + "\n").encode(),
            MIME["json"],
        )
    )
    item.reports = Reports(downloads, None, notes)
