"""Domain errors: each carries the HTTP status and the machine-readable code clients see."""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from typing import Any

from pydantic import ValidationError


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


class Busy(UsageMeterError):
    """DynamoDB kept refusing (throttling, contention) after our retries; safe to retry with the same key."""

    status = 503
    code = "temporarily_unavailable"


def describe_validation(
    errors: Iterable[Mapping[str, Any]], *, skip: Container[object] = ()
) -> tuple[str, list[dict[str, Any]]]:
    """Pydantic's (or the resolver's) validation errors as our message and details list: one
    home for turning field errors into text, with the field paths (minus `skip` parts)."""
    details = [
        {
            "field": ".".join(str(part) for part in e.get("loc", ()) if part not in skip) or "body",
            "message": e.get("msg", ""),
            "type": e.get("type", ""),
        }
        for e in errors
    ]
    message = "; ".join(f"{d['field']}: {d['message']}" for d in details) or "invalid request"
    return message, details


def validation_failed(exc: ValidationError, *, code: str = "validation_error") -> ValidationFailed:
    """A pydantic ValidationError as the 422 a client sees."""
    message, details = describe_validation(
        exc.errors(include_url=False, include_input=False, include_context=False)
    )
    return ValidationFailed(message, code=code, details=details)
