"""``/v1/analyses``: submit inputs, follow a job, fetch its result and artefacts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Annotated, Any, Literal, NoReturn
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from medforensics.service.auth import Principal, retry_after_header
from medforensics.service.deps import get_state, reader, writer
from medforensics.service.jobs import QueueFull, new_analysis_id
from medforensics.service.models import DONE, FAILED, STATUSES, Analysis, as_utc
from medforensics.service.schemas import (
    AUTH_ERRORS,
    AnalysisLinks,
    AnalysisPage,
    AnalysisSummary,
    AnalysisView,
    InputInfo,
    Problem,
)
from medforensics.service.state import ServiceState
from medforensics.service.uploads import CheckedUpload, UploadRejected, check_uploads

router = APIRouter(prefix="/v1/analyses", tags=["analyses"])

_PREFIX = "/v1/analyses"
_ERRORS = AUTH_ERRORS
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such analysis for this key's tenant."}
}
#: the multipart body, stated by hand: the endpoint reads it itself, after the cheap checks
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "DICOM file(s) of one or more series, a zip of a "
                            "series, NIfTI, PNG or JPEG. Formats are read from the content.",
                        }
                    },
                }
            }
        },
    }
}
_ARTEFACTS = {
    "report.pdf": ("pdf", "application/pdf", "PDF report"),
    "overlay.png": ("overlay_png", "image/png", "overlay image"),
    "sr.dcm": ("sr", "application/dicom", "DICOM Structured Report"),
}
Modality = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Z]{2,4}$",
        description="Modality to assume for non-DICOM inputs (CT, MR, DX, CR, OT...).",
    ),
]


def _links(analysis_id: str) -> AnalysisLinks:
    base = f"{_PREFIX}/{analysis_id}"
    return AnalysisLinks(
        self=base,
        report_pdf=f"{base}/report.pdf",
        overlay_png=f"{base}/overlay.png",
        sr_dcm=f"{base}/sr.dcm",
    )


def _summary(analysis: Analysis) -> AnalysisSummary:
    return AnalysisSummary(
        id=analysis.id,
        status=analysis.status,  # type: ignore[arg-type]
        created_at=as_utc(analysis.created_at),  # type: ignore[arg-type]
        finished_at=as_utc(analysis.finished_at),
        verdict=analysis.verdict,
        score=analysis.score,
        links=_links(analysis.id),
    )


def _view(state: ServiceState, analysis: Analysis) -> AnalysisView:
    inputs = state.store.inputs(analysis.id)
    return AnalysisView(
        **_summary(analysis).model_dump(),
        attempts=analysis.attempts,
        detector=analysis.detector,
        modality=analysis.modality,
        started_at=as_utc(analysis.started_at),
        purged_at=as_utc(analysis.purged_at),
        error=analysis.error,
        inputs=[
            InputInfo(name=i.name, sha256=i.sha256, size=i.size, format=i.format) for i in inputs
        ],
        result=json.loads(analysis.result_json) if analysis.result_json else None,
        artefacts=json.loads(analysis.artefacts_json) if analysis.artefacts_json else [],
    )


def _find(state: ServiceState, analysis_id: UUID, principal: Principal) -> Analysis:
    analysis = state.store.get(str(analysis_id), tenant=principal.tenant)
    if analysis is None:
        # another tenant's analysis is "not found" too: its existence is not ours to reveal
        raise HTTPException(404, f"there is no analysis {analysis_id} for this API key's tenant")
    return analysis


def _reject(
    state: ServiceState, status: int, reason: str, message: str, **headers: str
) -> NoReturn:
    state.metrics.rejected.inc(reason)
    raise HTTPException(status, message, headers=headers or None)


def _queue_full(state: ServiceState, queued: int, wait: float) -> NoReturn:
    _reject(
        state,
        429,
        "queue_full",
        f"the analysis queue is full ({queued} waiting, limit {state.settings.queue_limit}); "
        "retry after the number of seconds in the Retry-After header",
        **retry_after_header(wait),
    )


def _store(
    state: ServiceState,
    principal: Principal,
    analysis_id: str,
    files: list[tuple[str, Any]],
    modality: str | None,
) -> Analysis:
    """Check and spool the uploads, then commit them and queue the analysis (blocking I/O)."""
    try:
        checked: list[CheckedUpload] = check_uploads(files, state.blobs, state.settings)
    except UploadRejected as exc:
        _reject(state, exc.status, exc.reason, exc.message)
    for upload in checked:
        state.blobs.commit(upload.spooled)
    try:
        analysis = state.store.submit(
            tenant=principal.tenant,
            key_id=principal.key_id,
            detector=state.settings.detector,
            modality=modality,
            inputs=[upload.as_input() for upload in checked],
            queue_limit=state.settings.queue_limit,
            analysis_id=analysis_id,
            seconds_per_mib=state.settings.size_priority_s_per_mib,
        )
    except QueueFull as exc:
        _queue_full(state, exc.queued, state.retry_after_seconds())
    state.metrics.submitted.inc()
    state.log_submission(
        analysis.id,
        principal.key_id,
        [u.name for u in checked],
        [u.spooled.sha256 for u in checked],
    )
    state.pool.wake()
    return analysis


@router.post(
    "",
    status_code=202,
    response_model=AnalysisSummary,
    summary="Submit images for analysis",
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {"model": AnalysisView, "description": "With wait=true: the finished analysis."},
        **_ERRORS,
        413: {"model": Problem, "description": "Upload or zip over the limits (zip bomb)."},
        415: {"model": Problem, "description": "Content is not an image this service reads."},
        422: {"model": Problem, "description": "Bad parameters, no files, or an unsafe zip."},
    },
)
async def submit_analysis(
    request: Request,
    response: Response,
    principal: Principal = Depends(writer),
    wait: Annotated[
        bool, Query(description="Answer with the result when it is ready within the timeout.")
    ] = False,
    timeout: Annotated[
        float | None,
        Query(gt=0, le=3600, description="Seconds to wait with wait=true (capped by the server)."),
    ] = None,
    modality: Modality = None,
) -> Any:
    """Upload one or more files; answers 202 with the analysis id (or 200 with ``wait=true``)."""
    state = get_state(request)
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        _reject(
            state,
            415,
            "not_multipart",
            "send the files as multipart/form-data in a field named 'files'",
        )
    queued = await run_in_threadpool(state.store.queued_count)
    if queued >= state.settings.queue_limit:  # refused before a byte of the upload is read
        _queue_full(state, queued, await run_in_threadpool(state.retry_after_seconds))
    try:
        form = await request.form(max_files=state.settings.max_files, max_fields=100)
    except StarletteHTTPException as exc:  # what starlette raises for a bad multipart body
        if exc.status_code != 400:
            raise
        _reject(state, 422, "bad_multipart", f"the multipart body cannot be read: {exc.detail}")
    try:
        files = [
            (value.filename or "", value.file)
            for _key, value in form.multi_items()
            if isinstance(value, UploadFile)
        ]
        analysis_id = new_analysis_id()
        event = state.hub.register(analysis_id) if wait else None
        try:
            analysis = await run_in_threadpool(
                _store, state, principal, analysis_id, files, modality
            )
            total = analysis.total_bytes
            if event is not None and total <= state.settings.wait_max_bytes:
                limit = min(timeout or state.settings.wait_timeout_s, state.settings.wait_timeout_s)
                finished = await _wait_for(state, analysis.id, event, limit)
                if finished is not None:
                    view = await run_in_threadpool(_view, state, finished)
                    return JSONResponse(view.model_dump(mode="json"), status_code=200)
        finally:
            if event is not None:
                state.hub.unregister(analysis_id, event)
    finally:
        await form.close()
    response.headers["Location"] = f"{_PREFIX}/{analysis.id}"
    return _summary(analysis)


async def _wait_for(
    state: ServiceState, analysis_id: str, event: asyncio.Event, seconds: float
) -> Analysis | None:
    """The analysis once finished, or None after ``seconds``; checks the database each second
    in case another server process ran it."""
    deadline = time.monotonic() + seconds
    while True:
        analysis = await run_in_threadpool(state.store.get, analysis_id)
        if analysis is not None and analysis.status in (DONE, FAILED):
            return analysis
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=min(1.0, left))


@router.get(
    "",
    response_model=AnalysisPage,
    summary="List your analyses",
    responses=_ERRORS,
)
def list_analyses(
    state: ServiceState = Depends(get_state),
    principal: Principal = Depends(reader),
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    status: Annotated[
        Literal["queued", "running", "done", "failed"] | None,
        Query(description="Only this status."),
    ] = None,
) -> AnalysisPage:
    """The analyses submitted with this tenant's keys, newest first."""
    assert status is None or status in STATUSES
    page, total = state.store.list_for_tenant(
        principal.tenant, limit=limit, offset=offset, status=status
    )
    following = offset + len(page)
    next_link = None
    if following < total:
        query = f"limit={limit}&offset={following}" + (f"&status={status}" if status else "")
        next_link = f"{_PREFIX}?{query}"
    return AnalysisPage(
        items=[_summary(a) for a in page], total=total, limit=limit, offset=offset, next=next_link
    )


@router.get(
    "/{analysis_id}",
    response_model=AnalysisView,
    summary="Status and result of an analysis",
    responses={**_ERRORS, **_NOT_FOUND},
)
def get_analysis(
    analysis_id: UUID,
    state: ServiceState = Depends(get_state),
    principal: Principal = Depends(reader),
) -> AnalysisView:
    """Status (queued, running, done, failed) and, once done, the scan contract's JSON."""
    return _view(state, _find(state, analysis_id, principal))


def _artefact(
    state: ServiceState, principal: Principal, analysis_id: UUID, artefact: str, index: int
) -> FileResponse:
    key, media_type, what = _ARTEFACTS[artefact]
    analysis = _find(state, analysis_id, principal)
    if analysis.purged_at is not None:
        raise HTTPException(
            410, f"the artefacts of analysis {analysis_id} were deleted after the retention period"
        )
    if analysis.status == FAILED:
        raise HTTPException(
            404, f"analysis {analysis_id} failed, so it has no {what}: {analysis.error}"
        )
    if analysis.status != DONE:
        raise HTTPException(
            409, f"analysis {analysis_id} is {analysis.status}; its {what} exists once it is done"
        )
    artefacts = json.loads(analysis.artefacts_json) if analysis.artefacts_json else []
    if index >= len(artefacts):
        raise HTTPException(
            404,
            f"analysis {analysis_id} has {len(artefacts)} result(s); there is no result {index}",
        )
    entry = artefacts[index] or {}
    relative = entry.get(key)
    if not relative:
        why = "; ".join(entry.get("notes", [])) or _default_reason(artefact)
        raise HTTPException(404, f"there is no {what} for result {index} of this analysis: {why}")
    path = (state.settings.data_dir / relative).resolve()
    if not path.is_relative_to(state.settings.artefacts_dir.resolve()) or not path.is_file():
        raise HTTPException(404, f"the {what} of analysis {analysis_id} is no longer stored")
    return FileResponse(path, media_type=media_type, filename=f"{analysis.id}-{index}-{artefact}")


def _default_reason(artefact: str) -> str:
    if artefact == "sr.dcm":
        return "DICOM results (SR) are written only for DICOM inputs"
    return "no report was written for it (an input that could not be read?)"


def _artefact_route(artefact: str) -> None:
    _key, media_type, what = _ARTEFACTS[artefact]

    def endpoint(
        analysis_id: UUID,
        result: Annotated[int, Query(ge=0, le=100000, description="Result index.")] = 0,
        state: ServiceState = Depends(get_state),
        principal: Principal = Depends(reader),
    ) -> FileResponse:
        return _artefact(state, principal, analysis_id, artefact, result)

    endpoint.__name__ = "get_" + artefact.replace(".", "_")
    endpoint.__doc__ = f"The {what} of one result of a finished analysis."
    router.add_api_route(
        f"/{{analysis_id}}/{artefact}",
        endpoint,
        methods=["GET"],
        summary=f"Download the {what}",
        response_class=FileResponse,
        responses={
            200: {"content": {media_type: {}}, "description": what},
            **_ERRORS,
            404: {"model": Problem, "description": "No such analysis, result or artefact."},
            409: {"model": Problem, "description": "The analysis is not finished."},
            410: {"model": Problem, "description": "Deleted after the retention period."},
        },
    )


for _name in _ARTEFACTS:
    _artefact_route(_name)
