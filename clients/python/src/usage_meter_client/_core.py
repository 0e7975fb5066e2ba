"""What the sync and the async client share: settings, request parts, answers, errors, retries."""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import os
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pydantic

from . import _json
from ._errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UsageMeterError,
    ValidationError,
)
from ._models import (
    ApiObject,
    UsageEvent,
    UsageSnapshot,
    date_text,
    timestamp_text,
    to_decimal,
)
from ._version import __version__

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_BACKOFF = 0.5  # seconds: the first retry waits up to this, then it doubles
DEFAULT_MAX_BACKOFF = 8.0
MAX_RETRY_AFTER = 60.0  # a longer Retry-After is capped (a 503's is a few seconds at most)
API_KEY_ENV = "USAGE_METER_API_KEY"
BASE_URL_ENV = "USAGE_METER_BASE_URL"
USER_AGENT = f"usage-meter-client/{__version__}"

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# retried exceptions: no answer, or a broken one; never a request the client could not send
RETRY_EXCEPTIONS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

ModelT = TypeVar("ModelT", bound=ApiObject)


@dataclass(frozen=True)
class Request:
    """One API call, built once: every retry sends exactly these bytes (same idempotency keys)."""

    method: str
    path: str
    params: Mapping[str, str | list[str]] | None = None
    body: bytes | None = None
    accept: str | None = None  # instead of application/json (CSV history)


@dataclass(frozen=True)
class Settings:
    api_key: str
    base_url: str
    timeout: httpx.Timeout
    max_retries: int
    backoff: float
    max_backoff: float
    headers: Mapping[str, str]

    @classmethod
    def create(
        cls,
        api_key: str | None,
        base_url: str | None,
        timeout: float | httpx.Timeout,
        max_retries: int,
        backoff: float,
        max_backoff: float,
        default_headers: Mapping[str, str] | None,
    ) -> Settings:
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        if not key:
            raise ValueError(f"an API key is needed: pass api_key=... or set {API_KEY_ENV}")
        url = base_url if base_url is not None else os.environ.get(BASE_URL_ENV)
        if not url:
            raise ValueError(f"a base URL is needed: pass base_url=... or set {BASE_URL_ENV}")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        headers = {
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **(default_headers or {}),
            "Authorization": f"Bearer {key.strip()}",
        }
        return cls(
            api_key=key.strip(),
            base_url=url.rstrip("/"),
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            headers=headers,
        )

    def url(self, request: Request) -> str:
        return f"{self.base_url}{request.path}"

    def request_headers(self, request: Request) -> dict[str, str]:
        headers = dict(self.headers)
        if request.accept is not None:
            headers["Accept"] = request.accept
        if request.body is not None:
            headers["Content-Type"] = "application/json"
        return headers

    def backoff_delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform(0, min(max, base * 2**attempt))."""
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))

    def retry_delay(self, attempt: int, error: UsageMeterError) -> float | None:
        """Seconds to wait before retrying after `error` on try `attempt` (0-based), or None to give up."""
        if attempt >= self.max_retries:
            return None
        if isinstance(error, APIConnectionError):
            retryable = isinstance(error.__cause__, RETRY_EXCEPTIONS)
            return self.backoff_delay(attempt) if retryable else None
        if isinstance(error, LimitExceededError) or error.status not in RETRY_STATUSES:
            return None
        after = retry_after(error.response) if error.response is not None else None
        if after is not None:
            return min(after, MAX_RETRY_AFTER)
        return self.backoff_delay(attempt)


# ---- requests ---------------------------------------------------------------------------


def params(**values: str | int | dt.date | None) -> dict[str, str]:
    """Query parameters: the values given (None: left out), dates as ISO text."""
    query: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            raise TypeError(f"{name} must not be a bool")
        query[name] = date_text(value) if isinstance(value, dt.date) else str(value)
    return query


GroupBy = str | Sequence[str] | None
Filters = Mapping[str, str] | None


def grouping(group_by: GroupBy, filters: Filters) -> dict[str, str | list[str]]:
    """`groupBy` (comma-separated) and one `filter=DIMENSION:VALUE` per filtered dimension."""
    params: dict[str, str | list[str]] = {}
    if group_by is not None:
        params["groupBy"] = group_by if isinstance(group_by, str) else ",".join(group_by)
    if filters:
        params["filter"] = [f"{name}:{value}" for name, value in filters.items()]
    return params


def event_wire(event: UsageEvent) -> dict[str, Any]:
    """An event as the API takes it; a missing idempotency key is generated here, once per call."""
    wire: dict[str, Any] = {
        "metric": event.metric,
        "quantity": to_decimal(event.quantity),
        "idempotencyKey": event.idempotency_key or str(uuid.uuid4()),
    }
    if event.timestamp is not None:
        wire["timestamp"] = timestamp_text(event.timestamp)
    if event.developer_id is not None:
        wire["developerId"] = event.developer_id
    if event.metadata is not None:
        wire["metadata"] = dict(event.metadata)
    return wire


# ---- answers ----------------------------------------------------------------------------


def retry_after(response: httpx.Response) -> int | None:
    """Retry-After as whole seconds (delta-seconds or an HTTP date, rounded up so a client that
    waits that long is never early), None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0, math.ceil(float(value)))
    except (ValueError, OverflowError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0, math.ceil(when.timestamp() - time.time()))


def _body(response: httpx.Response) -> Any:
    try:
        return _json.loads(response.content)
    except ValueError:
        return None


_BY_STATUS: dict[int, type[UsageMeterError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    503: ServiceUnavailableError,
}
_DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "validation_error",
    429: "too_many_requests",
    503: "temporarily_unavailable",
}


def error_from_response(response: httpx.Response) -> UsageMeterError:
    """The typed error for a non-2xx answer, from its status and the body's `error.code`."""
    status = response.status_code
    body = _body(response)
    code, message, details = _error_fields(response, body)
    common: dict[str, Any] = {
        "status": status,
        "code": code,
        "details": details,
        "response": response,
        "body": body,
    }
    if status == 429:
        if code != "limit_exceeded":
            return RateLimitError(message, **common)
        return LimitExceededError(message, retry_after=retry_after(response), usage=_usage(body), **common)
    return _error_class(status)(message, **common)


def _error_fields(response: httpx.Response, body: Any) -> tuple[str, str, list[Any] | None]:
    """Code, message and details of an error answer: the service's `error` object, API
    Gateway's `{"message": ...}`, or else the status and the raw text."""
    status = response.status_code
    error = body.get("error") if isinstance(body, dict) else None
    code = _default_code(status)
    message = response.reason_phrase or f"HTTP {status}"
    if isinstance(error, dict):
        details = error.get("details") if isinstance(error.get("details"), list) else None
        return str(error.get("code") or code), str(error.get("message") or message), details
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return code, body["message"], None  # API Gateway's own answers: {"message": "..."}
    if response.text:
        return code, response.text[:500], None
    return code, message, None


def _default_code(status: int) -> str:
    """The code of an error answer that names none."""
    return _DEFAULT_CODES.get(status, "server_error" if status >= 500 else f"http_{status}")


def _usage(body: Any) -> UsageSnapshot | None:
    """The usage a limit_exceeded answer carries, when it is there and well formed."""
    if not (isinstance(body, dict) and isinstance(body.get("usage"), dict)):
        return None
    try:
        return UsageSnapshot.model_validate(body["usage"])
    except pydantic.ValidationError:
        return None


def _error_class(status: int) -> type[UsageMeterError]:
    """The error type of a status the answer's code does not refine."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls
    if status >= 500:
        return InternalServerError
    if status >= 400:
        return BadRequestError
    return UsageMeterError


def connection_error(exc: httpx.TransportError) -> UsageMeterError:
    """The error for a request that got no answer; `__cause__` is httpx's exception."""
    reason = str(exc) or type(exc).__name__
    error: UsageMeterError
    if isinstance(exc, httpx.TimeoutException):
        error = APITimeoutError(f"no answer in time: {reason}", code="timeout")
    else:
        error = APIConnectionError(f"connection failed: {reason}", code="connection_error")
    error.__cause__ = exc
    return error


def parse(response: httpx.Response, model: type[ModelT]) -> ModelT:
    """A 2xx answer as its typed result; anything unreadable is an `invalid_response` error."""
    try:
        return model.model_validate(_json.loads(response.content))
    except (ValueError, pydantic.ValidationError) as exc:
        raise UsageMeterError(
            f"unexpected answer from {response.request.url.path}: {exc}",
            status=response.status_code,
            code="invalid_response",
            response=response,
        ) from exc
