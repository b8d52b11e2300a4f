"""Response bodies of the API (pydantic), so the OpenAPI schema states what clients get."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

Status = Literal["queued", "running", "done", "failed"]


class Problem(BaseModel):
    """Every error answer: what went wrong, for people."""

    detail: str = Field(description="What went wrong and what to do about it.")


class AnalysisLinks(BaseModel):
    self: str
    report_pdf: str
    overlay_png: str
    sr_dcm: str


class InputInfo(BaseModel):
    name: str
    sha256: str
    size: int
    format: str


class AnalysisSummary(BaseModel):
    """What POST answers with 202, and each item of the list."""

    id: str
    status: Status
    created_at: datetime
    finished_at: datetime | None = None
    verdict: str | None = None
    score: float | None = None
    links: AnalysisLinks


class AnalysisView(AnalysisSummary):
    """An analysis in full: the scan contract's JSON in ``result`` once done."""

    attempts: int
    detector: str
    modality: str | None = None
    started_at: datetime | None = None
    purged_at: datetime | None = None
    error: str | None = None
    inputs: list[InputInfo]
    result: dict[str, Any] | None = Field(
        default=None,
        description='The scan contract\'s JSON object: {"tool", "version", "results": [...], '
        '"skipped": [...]}.',
    )
    artefacts: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Per result index, which artefacts exist (pdf, overlay_png, sr) and notes.",
    )


class AnalysisPage(BaseModel):
    items: list[AnalysisSummary]
    total: int
    limit: int
    offset: int
    next: str | None = None


class ModelInfo(BaseModel):
    name: str
    active: bool
    available: bool
    description: dict[str, Any] | None = None
    error: str | None = None


class ModelList(BaseModel):
    active: str
    models: list[ModelInfo]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    database: bool
    workers_alive: int
    workers_ready: int
    workers_configured: int
    model_loaded: bool
    queue_depth: int | None = None
    problems: list[str] = Field(default_factory=list)


#: the error answers every authenticated operation may give (for the OpenAPI schema)
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No API key, or not a valid one."},
    403: {"model": Problem, "description": "The key was revoked or lacks the permission."},
    429: {"model": Problem, "description": "Rate limit reached (see Retry-After)."},
}
