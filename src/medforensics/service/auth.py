"""API keys (random, shown once, stored as SHA-256) and per-key rate limits.

A key reads ``mf_<key id>_<secret>``: the key id is public (logs, audit, ``apikey list``), the
secret is 32 random bytes and only its SHA-256 is kept. A fast hash is enough because the secret
has 256 bits of entropy: there is nothing to brute-force, unlike a password.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, select, update

from medforensics.db import session_factory
from medforensics.service.models import ApiKey, utcnow

KEY_PREFIX = "mf_"
SCOPES = ("read", "write")
_KEY_ID_HEX = 12
_TOKEN = re.compile(r"^mf_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
#: how long a looked-up key is trusted before the database is asked again (revocations by
#: another process take effect within this delay; the same process invalidates at once)
CACHE_SECONDS = 5.0


class AuthError(Exception):
    """Authentication or authorisation failed; ``status`` is 401 or 403."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key id, its tenant, scopes and rate."""

    key_id: str
    tenant: str
    scopes: frozenset[str]
    rate_per_min: int


@dataclass(frozen=True)
class CreatedKey:
    """A new key: ``token`` is shown once and never stored."""

    key_id: str
    tenant: str
    token: str
    scopes: tuple[str, ...]
    rate_per_min: int | None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed token, else None."""
    match = _TOKEN.match(token.strip())
    return (match.group(1), match.group(2)) if match else None


def check_tenant(tenant: str) -> str:
    if not _TENANT.match(tenant):
        raise ValueError(
            f"tenant {tenant!r} is not valid: use 1-128 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return tenant


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(sorted(set(scopes)))
    unknown = [scope for scope in chosen if scope not in SCOPES]
    if unknown or not chosen:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}; got {', '.join(chosen)}")
    return chosen


class KeyStore:
    """Create, list, revoke and check API keys."""

    def __init__(self, engine: Engine, default_rate_per_min: int = 120) -> None:
        self._sessions = session_factory(engine)
        self.default_rate_per_min = default_rate_per_min
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    def create(
        self,
        tenant: str,
        *,
        rate_per_min: int | None = None,
        scopes: Iterable[str] = SCOPES,
        label: str = "",
    ) -> CreatedKey:
        check_tenant(tenant)
        chosen = check_scopes(scopes)
        if rate_per_min is not None and rate_per_min <= 0:
            raise ValueError(
                f"rate must be a positive number of requests per minute, not {rate_per_min}"
            )
        key_id = secrets.token_hex(_KEY_ID_HEX // 2)
        secret = secrets.token_urlsafe(32)
        with self._sessions() as session, session.begin():
            session.add(
                ApiKey(
                    id=key_id,
                    tenant=tenant,
                    secret_sha256=hash_secret(secret),
                    scopes=" ".join(chosen),
                    rate_per_min=rate_per_min,
                    label=label[:200],
                    created_at=utcnow(),
                )
            )
        return CreatedKey(key_id, tenant, f"{KEY_PREFIX}{key_id}_{secret}", chosen, rate_per_min)

    def list(self, tenant: str | None = None) -> list[ApiKey]:
        with self._sessions() as session:
            query = select(ApiKey).order_by(ApiKey.tenant, ApiKey.created_at)
            if tenant is not None:
                query = query.where(ApiKey.tenant == tenant)
            return list(session.scalars(query).all())

    def revoke(self, key_id: str) -> bool:
        """Revoke a key; False when there is no such key or it was already revoked."""
        with self._sessions() as session, session.begin():
            done = session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        with self._lock:
            self._cache.pop(key_id, None)
        return bool(getattr(done, "rowcount", 0))

    def _lookup(self, key_id: str) -> ApiKey | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        with self._sessions() as session:
            key = session.get(ApiKey, key_id)
        with self._lock:
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[key_id] = (now, key)
        return key

    def authenticate(self, token: str | None) -> Principal:
        """The principal for ``token``.

        Raises:
            AuthError: 401 for a missing, malformed or unknown key; 403 for a revoked one.
        """
        if not token:
            raise AuthError(401, "an API key is required: send it as 'Authorization: Bearer <key>'")
        parsed = parse_token(token)
        if parsed is None:
            raise AuthError(401, "the API key is malformed; keys look like mf_<id>_<secret>")
        key_id, secret = parsed
        key = self._lookup(key_id)
        if key is None or not hmac.compare_digest(key.secret_sha256, hash_secret(secret)):
            raise AuthError(401, "the API key is not valid")
        if key.revoked_at is not None:
            raise AuthError(403, f"API key {key_id} was revoked; ask for a new key")
        return Principal(
            key_id=key.id,
            tenant=key.tenant,
            scopes=key.scope_set,
            rate_per_min=key.rate_per_min or self.default_rate_per_min,
        )


def require_scope(principal: Principal, scope: str) -> None:
    if scope not in principal.scopes:
        raise AuthError(
            403,
            f"API key {principal.key_id} does not have the '{scope}' permission "
            f"(it has: {', '.join(sorted(principal.scopes)) or 'none'})",
        )


class RateLimiter:
    """A token bucket per key: ``rate`` requests per minute, bursts up to ``rate``."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key_id: str, rate_per_min: int, now: float | None = None) -> float:
        """Take one token; return 0 when allowed, else the seconds to wait before retrying."""
        now = time.monotonic() if now is None else now
        capacity = float(max(rate_per_min, 1))
        per_second = capacity / 60.0
        with self._lock:
            tokens, last = self._buckets.get(key_id, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * per_second)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / per_second


def retry_after_header(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
