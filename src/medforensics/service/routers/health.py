"""``/healthz`` (the process answers), ``/readyz`` (it can do work) and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from medforensics.service.deps import get_state
from medforensics.service.schemas import Health, Readiness
from medforensics.service.state import ServiceState

router = APIRouter(tags=["health"])

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/healthz", response_model=Health, summary="Liveness")
def healthz() -> Health:
    """Answers while the server process is up."""
    return Health(status="ok")


def _readiness(state: ServiceState) -> Readiness:
    database = state.database_ok()
    configured = state.settings.workers
    alive, ready = state.pool.alive, state.pool.ready
    problems = list(state.pool.problems())
    if not database:
        problems.append("the database cannot be reached")
    if configured and ready == 0:
        problems.append("no worker has loaded the detector yet")
    if configured == 0:
        problems.append("no workers are configured (MEDFORENSICS_WORKERS=0): jobs only queue")
    queue = state.store.queued_count() if database else None
    model_loaded = state.pool.model_description() is not None
    return Readiness(
        ready=database and ready > 0 and model_loaded,
        database=database,
        workers_alive=alive,
        workers_ready=ready,
        workers_configured=configured,
        model_loaded=model_loaded,
        queue_depth=queue,
        problems=problems,
    )


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "Not ready; 'problems' says why."}},
)
async def readyz(state: ServiceState = Depends(get_state)) -> JSONResponse:
    """Ready when the database answers and at least one worker has loaded the detector."""
    readiness = await run_in_threadpool(_readiness, state)
    return JSONResponse(readiness.model_dump(), status_code=200 if readiness.ready else 503)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics",
    responses={200: {"content": {PROMETHEUS_TEXT: {}}, "description": "Text exposition format."}},
)
async def metrics(state: ServiceState = Depends(get_state)) -> PlainTextResponse:
    """Requests, analyses by status and verdict, queue depth, latency histograms."""
    body = await run_in_threadpool(state.metrics.render)
    return PlainTextResponse(body, media_type=PROMETHEUS_TEXT)
