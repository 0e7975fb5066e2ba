"""The Lambda authorizer's logic: header -> key -> developerId and role.

Malformed keys are refused before any database call. Lookups are cached in the container for
KEY_CACHE_SECONDS (at most 60): that bounds how long a revoked key keeps working.

The authorizer always answers "authorized" to API Gateway and passes the outcome in the
context: a refused request carries `authError` and no identity, and the handlers answer it
with 401 in the API's own error shape (API Gateway's own 401/403 bodies cannot be shaped).
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel

from usage_meter.domain import clock
from usage_meter.domain.accounts import hash_key, is_well_formed
from usage_meter.models.accounts import ApiKeyRecord
from usage_meter.models.timestamps import format_timestamp
from usage_meter.settings import settings
from usage_meter.store import accounts as account_store

logger = Logger(child=True)

MAX_CACHE_ENTRIES = 10_000


class AuthOutcome(BaseModel):
    """What the authorizer decided; `context` goes to the handlers."""

    developer_id: str | None = None
    role: str | None = None
    error: str | None = None

    def context(self) -> dict[str, Any]:
        if self.error:
            return {"authError": self.error}
        return {"developerId": self.developer_id, "role": self.role}


_cache: dict[str, tuple[float, ApiKeyRecord | None]] = {}


def cache_seconds() -> float:
    """How long a lookup is trusted: KEY_CACHE_SECONDS, at most 60."""
    return settings().key_cache_seconds


def clear_cache() -> None:
    _cache.clear()


def extract_key(headers: dict[str, str]) -> str | bool | None:
    """The key from `Authorization: Bearer <key>` or `X-API-Key: <key>`.

    None when neither header is there; False when a header is present but unusable (empty
    bearer, other scheme, two keys, two different keys in the two headers).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    found: list[str] = []
    authorization = lowered.get("authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return False
        found.append(value.strip())
    api_key = lowered.get("x-api-key")
    if api_key is not None:
        found.append(api_key.strip())
    if not found:
        return None
    if len(set(found)) != 1:
        return False
    return found[0]


def _evict(now: float) -> None:
    """Make room: expired entries first, then unknown keys, so a flood of random keys cannot
    push the real ones out."""
    for stale in [h for h, (expires, _) in _cache.items() if expires <= now]:
        del _cache[stale]
    if len(_cache) >= MAX_CACHE_ENTRIES:
        for unknown in [h for h, (_, record) in _cache.items() if record is None]:
            del _cache[unknown]
    if len(_cache) >= MAX_CACHE_ENTRIES:
        _cache.clear()


def _lookup(key_hash: str) -> ApiKeyRecord | None:
    now = time.monotonic()
    cached = _cache.get(key_hash)
    if cached and cached[0] > now:
        return cached[1]
    record = account_store.get_key(key_hash)
    if len(_cache) >= MAX_CACHE_ENTRIES:
        _evict(now)
    _cache[key_hash] = (now + cache_seconds(), record)
    if record is not None and record.status == "active":
        try:
            account_store.touch_key(record, format_timestamp(clock.now()))
        except Exception:  # last-used is informational: never fail a request on it
            logger.warning("could not record key use", extra={"keyId": record.key_id})
    return record


def authorize(headers: dict[str, str]) -> AuthOutcome:
    key = extract_key(headers)
    if key is None:
        return AuthOutcome(error="missing_key")
    if key is False or not isinstance(key, str) or not is_well_formed(key):
        return AuthOutcome(error="malformed_key")
    record = _lookup(hash_key(key))
    if record is None:
        logger.info("unknown key")
        return AuthOutcome(error="unknown_key")
    if record.status != "active":
        logger.info("revoked key", extra={"keyId": record.key_id})
        return AuthOutcome(error="revoked_key")
    return AuthOutcome(developer_id=record.developer_id, role=record.role)
