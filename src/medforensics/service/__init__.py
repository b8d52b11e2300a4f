"""The REST API: FastAPI app, API keys, a database-backed job queue and worker pool.

Start it with ``medforensics serve``; build it in code with ``create_app(ServiceSettings(...))``.
FastAPI, uvicorn and SQLAlchemy come with the ``service`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medforensics.service.config import ServiceSettings, SettingsError

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy import Engine

__all__ = ["ServiceSettings", "SettingsError", "create_app"]


def create_app(settings: ServiceSettings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """See ``medforensics.service.app.create_app`` (imported here lazily: FastAPI is an extra)."""
    from medforensics.utils.optional import require

    require("fastapi", "the REST API")
    from medforensics.service.app import create_app as build

    return build(settings, engine=engine)
