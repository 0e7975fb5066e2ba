"""Typed errors: one class per kind of refusal, all with `.status`, `.code` and `.message`."""

from __future__ import annotations

from typing import Any

import httpx

from ._models import UsageSnapshot


class UsageMeterError(Exception):
    """Base of every error this client raises.

    `status` is the HTTP status (None when no answer came), `code` the service's stable
    machine-readable code (e.g. `idempotency_key_reused`), `message` the text for people.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "error",
        details: list[Any] | None = None,
        response: httpx.Response | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details
        self.response = response
        self.body = body

    @property
    def request_id(self) -> str | None:
        """API Gateway's request id, for the provider's logs (when the answer carried one)."""
        if self.response is None:
            return None
        headers = self.response.headers
        value: str | None = headers.get("apigw-requestid") or headers.get("x-amzn-requestid")
        return value

    def __str__(self) -> str:
        where = f"{self.status} " if self.status is not None else ""
        return f"{where}{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, message={self.message!r})"


class APIConnectionError(UsageMeterError):
    """No answer: the connection failed or broke (after the client's retries)."""


class APITimeoutError(APIConnectionError):
    """No answer within the timeout (after the client's retries)."""


class APIStatusError(UsageMeterError):
    """The service answered with an error status."""


class BadRequestError(APIStatusError):
    """The request was refused as malformed (4xx not covered by a more precise class)."""


class ValidationError(BadRequestError):
    """400/422: invalid input (`validation_error`, `timestamp_out_of_range`, `invalid_range`, …)."""


class AuthenticationError(APIStatusError):
    """401: missing, malformed, unknown or revoked API key."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not act for that developer (a developer key naming another developer)."""


class NotFoundError(APIStatusError):
    """404: e.g. `developer_not_found` when a service key names an unknown developer."""


class ConflictError(APIStatusError):
    """409: `idempotency_key_reused`, the key was used before with a different event."""


class LimitExceededError(APIStatusError):
    """429 `limit_exceeded`: a hard limit would be passed and nothing was counted.

    Not retried: the limit clears when the billing period resets (`retry_after`, whole seconds)
    or the plan changes. `usage` tells where the metric stands.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: int | None = None,
        usage: UsageSnapshot | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.usage = usage


class RateLimitError(APIStatusError):
    """429 without `limit_exceeded` (the gateway's own throttling): retried, then raised."""


class InternalServerError(APIStatusError):
    """5xx: the service failed. Retried (tracking stays exact: retries reuse the idempotency key)."""


class ServiceUnavailableError(InternalServerError):
    """503 `temporarily_unavailable`: DynamoDB kept refusing; retried, honouring Retry-After."""
