"""Domain errors: each carries the HTTP status and the machine-readable code clients see."""

from __future__ import annotations

from typing import Any


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
