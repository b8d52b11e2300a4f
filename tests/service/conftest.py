"""In-process service fixtures: the app with its lifespan, an httpx ASGI client, API keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from medforensics.service import ServiceSettings, create_app
from medforensics.service.state import ServiceState


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Api:
    """A running app, a client talking to it in-process, and a read+write key of tenant alpha."""

    app: FastAPI
    state: ServiceState
    client: httpx.AsyncClient
    key: str

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def new_key(self, tenant: str = "alpha", **options: Any) -> str:
        return self.state.keys.create(tenant, **options).token

    async def submit(
        self, files: list[tuple[str, bytes]], key: str | None = None, **params: Any
    ) -> httpx.Response:
        return await self.client.post(
            "/v1/analyses",
            files=[("files", (name, data, "application/octet-stream")) for name, data in files],
            headers=self.auth(key),
            params=params,
        )

    async def wait_done(self, analysis_id: str, timeout: float = 60.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            response = await self.client.get(f"/v1/analyses/{analysis_id}", headers=self.auth())
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if body["status"] in ("done", "failed"):
                return body
            if loop.time() > deadline:
                raise AssertionError(f"analysis {analysis_id} still {body['status']}")
            await asyncio.sleep(0.05)


def service_settings(data_dir: Path, **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "detector": "noise-residual",
        "workers": 1,
        "worker_mode": "thread",
        "reports": False,
        "default_rate_per_min": 100000,
        "retention_days": 0,
    }
    values.update(overrides)
    return ServiceSettings(**values)


@asynccontextmanager
async def running_api(data_dir: Path, **overrides: Any) -> AsyncIterator[Api]:
    app = create_app(service_settings(data_dir, **overrides))
    state: ServiceState = app.state.service
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(app, state, client, state.keys.create("alpha").token)


@pytest.fixture
def api_factory(tmp_path: Path) -> Callable[..., AbstractAsyncContextManager[Api]]:
    """``async with api_factory(workers=0, ...) as api``: an app with those settings."""
    counter = iter(range(1000))

    def make(**overrides: Any) -> AbstractAsyncContextManager[Api]:
        return running_api(tmp_path / f"data-{next(counter)}", **overrides)

    return make


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """The default app: one thread worker running noise-residual, no reports."""
    async with running_api(tmp_path / "data") as running:
        yield running
