"""Domain errors: each carries the HTTP status and the machine-readable code clients see."""

from __future__ import annotations

import json
import re
from collections.abc import Container, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from usage_meter import jsonutil


class UsageMeterError(Exception):
    """Base of every error a client may see; `code` is stable, `message` is for people."""

    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: list[Any] | None = None,
        retry_after: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        self.retry_after = retry_after  # seconds, sent as Retry-After
        self.extra = extra  # more top-level fields of the error body (e.g. the usage block)


class ValidationFailed(UsageMeterError):
    status = 422
    code = "validation_error"


class InvalidJson(UsageMeterError):
    status = 400
    code = "invalid_json"


class Unauthorized(UsageMeterError):
    status = 401
    code = "unauthorized"


class Forbidden(UsageMeterError):
    status = 403
    code = "forbidden"


class NotFound(UsageMeterError):
    status = 404
    code = "not_found"


class Conflict(UsageMeterError):
    status = 409
    code = "conflict"


class IdempotencyKeyReused(UsageMeterError):
    status = 409
    code = "idempotency_key_reused"


class LimitExceeded(UsageMeterError):
    status = 429
    code = "limit_exceeded"


class RateLimited(UsageMeterError):
    """The plan's requestsPerMinute, enforced (`rateEnforcement: hard`), is used up for this
    minute; `requests_per_minute` lets the answer carry the rate headers (nothing remaining)."""

    status = 429
    code = "rate_limited"
    requests_per_minute: int | None = None


class TooManyMetrics(ValidationFailed):
    """A developer already has the most metrics its plans do not declare."""

    code = "too_many_metrics"


class Busy(UsageMeterError):
    """DynamoDB kept refusing (throttling, contention) after our retries; safe to retry with the same key."""

    status = 503
    code = "temporarily_unavailable"


MAX_REPORTED_ERRORS = 10
MAX_FIELD_NAME = 64
"""An answer reports at most this many field errors, each field name cut to this length: the
names come from the client (an unknown key of a megabyte, or a million unknown keys), and an
answer that echoed them whole would grow past Lambda's 6 MB response limit (a 5xx)."""


def _field(loc: Iterable[object], skip: Container[object]) -> str:
    parts = (str(part) for part in loc if part not in skip)
    return ".".join(p if len(p) <= MAX_FIELD_NAME else f"{p[:MAX_FIELD_NAME]}..." for p in parts) or "body"


_DECIMAL_REPR = re.compile(r"Decimal\('([^']*)'\)")
_QUOTED = re.compile(r"'([^']*)'")
_QUOTING_ERRORS = frozenset({"literal_error", "enum", "string_pattern_mismatch"})


def _decimal_text(match: re.Match[str]) -> str:
    try:
        return jsonutil.number_text(Decimal(match.group(1)))
    except (InvalidOperation, ValueError):
        return match.group(1)


def json_message(error: Mapping[str, Any]) -> str:
    """pydantic's message in JSON's words, not Python's reprs: `Decimal('1000000000000')` is
    1000000000000, a choice or a pattern is quoted as JSON ("day", not 'day'), and a
    validator's own message comes without pydantic's "Value error, " prefix."""
    # a validator's own ValueError comes prefixed with pydantic's "Value error, "
    message = _DECIMAL_REPR.sub(_decimal_text, str(error.get("msg", "")).removeprefix("Value error, "))
    if error.get("type") in _QUOTING_ERRORS:
        message = _QUOTED.sub(lambda match: json.dumps(match.group(1)), message)
    return message


def describe_validation(
    errors: Iterable[Mapping[str, Any]], *, skip: Container[object] = ()
) -> tuple[str, list[dict[str, Any]]]:
    """Pydantic's (or the resolver's) validation errors as our message and details list: one
    home for turning field errors into text, with the field paths (minus `skip` parts), at
    most MAX_REPORTED_ERRORS of them."""
    every = list(errors)
    details = [
        {"field": _field(e.get("loc", ()), skip), "message": json_message(e), "type": e.get("type", "")}
        for e in every[:MAX_REPORTED_ERRORS]
    ]
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details) or "invalid request"
    if len(every) > MAX_REPORTED_ERRORS:
        message += f"; and {len(every) - MAX_REPORTED_ERRORS} more errors"
    return message, details


def validation_failed(exc: ValidationError, *, code: str = "validation_error") -> ValidationFailed:
    """A pydantic ValidationError as the 422 a client sees."""
    message, details = describe_validation(
        exc.errors(include_url=False, include_input=False, include_context=False)
    )
    return ValidationFailed(message, code=code, details=details)
