"""FastAPI dependencies: the service state, and the caller's key checked and rate-limited."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from medforensics.service.auth import AuthError, Principal, require_scope, retry_after_header
from medforensics.service.state import ServiceState

_bearer = HTTPBearer(auto_error=False, description="An API key: 'Authorization: Bearer mf_...'.")
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="The same API key, in a header of its own."
)


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def _authenticate(
    request: Request,
    state: ServiceState,
    bearer: HTTPAuthorizationCredentials | None,
    header_key: str | None,
    scope: str,
) -> Principal:
    token = bearer.credentials if bearer is not None else header_key
    try:
        principal = state.keys.authenticate(token)
        require_scope(principal, scope)
    except AuthError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        raise HTTPException(exc.status, exc.message, headers=headers) from exc
    wait = state.limiter.acquire(principal.key_id, principal.rate_per_min)
    if wait > 0:
        state.metrics.rejected.inc("rate_limited")
        raise HTTPException(
            429,
            f"API key {principal.key_id} is limited to {principal.rate_per_min} requests per "
            "minute; retry after the number of seconds in the Retry-After header",
            headers=retry_after_header(wait),
        )
    request.state.key_id = principal.key_id
    return principal


def caller(scope: str) -> Callable[..., Principal]:
    """A dependency giving the authenticated caller, who must hold ``scope``."""

    def dependency(
        request: Request,
        state: ServiceState = Depends(get_state),
        bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
        header_key: str | None = Security(_api_key_header),
    ) -> Principal:
        return _authenticate(request, state, bearer, header_key, scope)

    return dependency


reader = caller("read")
writer = caller("write")
