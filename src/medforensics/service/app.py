"""The FastAPI application: routers, request guard (size, idle timeout), metrics and logs."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from medforensics.__about__ import __version__
from medforensics.service.config import ServiceSettings
from medforensics.service.logs import log_event, service_logger
from medforensics.service.routers import analyses, health, models
from medforensics.service.state import ServiceState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_DESCRIPTION = """\
Checks uploaded medical images (CT, X-ray, MRI) for tampering and AI generation.

Send an API key as `Authorization: Bearer mf_...` (created with `medforensics apikey create`).
Submit files to `POST /v1/analyses`; poll `GET /v1/analyses/{id}` until `status` is `done`;
the result is the scan contract's JSON (`{"tool", "version", "results": [...]}`), with a PDF
report, an overlay image and, for DICOM inputs, a DICOM Structured Report.
"""


class _GuardRejection(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: list[Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class RequestGuard:
    """Outermost middleware: request id, body size limit (413), idle body timeout (408),
    access log and request metrics.

    The size limit is checked against Content-Length before anything is read, and again while
    the body streams in (chunked uploads), so a huge upload never reaches the disk.
    """

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self.state.settings
        started = time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        status_box = {"status": 500, "started": False}
        request_headers = dict(scope.get("headers") or [])

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box["status"] = message["status"]
                status_box["started"] = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        limit = settings.upload_limit_bytes
        received = 0
        body_done = False

        async def guarded_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body only a disconnect can come: no time limit on it
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), settings.upload_idle_timeout_s)
            except TimeoutError:
                raise _GuardRejection(
                    408,
                    f"no request data arrived for {settings.upload_idle_timeout_s:g} s; "
                    "the upload was abandoned",
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _GuardRejection(413, _too_large_message(limit))
                body_done = not message.get("more_body", False)
            return message

        try:
            declared = request_headers.get(b"content-length")
            if (
                scope["method"] in _BODY_METHODS
                and declared is not None
                and declared.isdigit()
                and int(declared) > limit
            ):
                raise _GuardRejection(413, _too_large_message(limit))
            body_receive = guarded_receive if scope["method"] in _BODY_METHODS else receive
            await self.app(scope, body_receive, send_wrapper)
        except _GuardRejection as rejection:
            self.state.metrics.rejected.inc("too_large" if rejection.status == 413 else "timeout")
            if status_box["started"]:
                raise
            await _send_json(send_wrapper, rejection.status, {"detail": rejection.message}, [])
        finally:
            self._record(scope, started, request_id, int(status_box["status"]))

    def _record(self, scope: Scope, started: float, request_id: str, status: int) -> None:
        seconds = time.perf_counter() - started
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        self.state.metrics.requests.inc(method, template, str(status))
        self.state.metrics.request_seconds.observe(seconds, method, template)
        state = scope.get("state") or {}
        log_event(
            service_logger(),
            "http.request",
            request_id=request_id,
            method=method,
            route=template,
            status=status,
            seconds=round(seconds, 4),
            key=state.get("key_id") if isinstance(state, dict) else None,
        )


def _too_large_message(limit: int) -> str:
    from medforensics.utils.text import human_size

    return (
        f"the request body is larger than the limit of {human_size(limit)}; split the upload "
        "or ask the operator to raise MEDFORENSICS_UPLOAD_LIMIT_BYTES"
    )


def create_app(settings: ServiceSettings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """The API app; its workers start and stop with the app's lifespan.

    Args:
        settings: defaults to ``ServiceSettings.from_env()``.
        engine: an existing SQLAlchemy engine (tests); made from the settings otherwise.
    """
    settings = settings or ServiceSettings.from_env()
    state = ServiceState(settings, engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(state.start)
        try:
            yield
        finally:
            await run_in_threadpool(state.stop)

    app = FastAPI(
        title="medforensics",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "analyses", "description": "Submit images, follow jobs, fetch results."},
            {"name": "models", "description": "Detectors and their model cards."},
            {"name": "health", "description": "Liveness, readiness and metrics."},
        ],
    )
    app.state.service = state
    app.include_router(analyses.router)
    app.include_router(models.router)
    app.include_router(health.router)
    app.add_middleware(RequestGuard, state=state)
    log_event(service_logger(), "service.app", version=__version__)
    return app
