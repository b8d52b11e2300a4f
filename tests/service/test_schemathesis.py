"""Schemathesis against the published OpenAPI schema: generated requests never get a 5xx.

Every operation is fuzzed with valid (positive) and invalid (negative) requests built from the
schema, through schemathesis' ASGI transport (the app's lifespan runs, workers included).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.python.asgi import shutdown_lifespans  # noqa: E402

from medforensics.service import create_app  # noqa: E402
from tests.service.conftest import service_settings  # noqa: E402

pytestmark = pytest.mark.serial

EXAMPLES = 25


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    data: Path = tmp_path_factory.mktemp("fuzz") / "data"
    app = create_app(
        service_settings(data, queue_limit=10_000, upload_limit_bytes=2**20, wait_timeout_s=5)
    )
    key = app.state.service.keys.create("fuzz").token
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app), key
    finally:
        shutdown_lifespans()


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def test_schema_has_every_operation(fuzzed: tuple[Any, str]) -> None:
    labels = {operation.label for operation in _operations(fuzzed[0])}
    assert {
        "POST /v1/analyses",
        "GET /v1/analyses",
        "GET /v1/analyses/{analysis_id}",
        "GET /v1/analyses/{analysis_id}/report.pdf",
        "GET /v1/analyses/{analysis_id}/overlay.png",
        "GET /v1/analyses/{analysis_id}/sr.dcm",
        "GET /v1/models",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
    } <= labels


def _fuzz(operation: Any, mode: GenerationMode, key: str, seen: set[int]) -> Any:
    """A Hypothesis test sending generated requests for one operation (with our API key)."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        headers = dict(case.headers or {})
        headers.setdefault("Authorization", f"Bearer {key}")
        response = case.call(headers=headers)
        case.validate_response(response, checks=[not_a_server_error])
        seen.add(response.status_code)

    return check


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(fuzzed: tuple[Any, str], mode: GenerationMode) -> None:
    schema, key = fuzzed
    statuses: dict[str, set[int]] = {}
    for operation in _operations(schema):
        check = _fuzz(operation, mode, key, statuses.setdefault(operation.label, set()))
        try:
            check()
        except Unsatisfiable:
            # no invalid request exists for an operation without parameters (/healthz...)
            assert mode is GenerationMode.NEGATIVE and not list(operation.iter_parameters())
    statuses = {label: codes for label, codes in statuses.items() if codes}
    print({label: sorted(codes) for label, codes in statuses.items()})
    assert all(code < 500 for codes in statuses.values() for code in codes), statuses
    assert len(statuses) >= (10 if mode is GenerationMode.POSITIVE else 6)
