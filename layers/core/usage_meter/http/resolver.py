"""The resolver every HTTP function uses: validation on, exact decimals, one error shape.

Each function's app.py builds a resolver with `make_resolver()` and includes only its own
router (one module of this package per function), so a cold start imports only what that
function needs; the docs function includes all of them to publish the OpenAPI document.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import date
from http import HTTPStatus
from typing import Annotated, Any, Protocol

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from usage_meter import jsonutil
from usage_meter.domain import clock
from usage_meter.domain.identity import DeveloperResolver, authorizer_context, identity_from_authorizer
from usage_meter.domain.ratelimit import rate_status, status_of
from usage_meter.errors import RateLimited, UsageMeterError, describe_validation, validation_failed
from usage_meter.models.accounts import Identity
from usage_meter.models.wire import DEVELOPER_ID_PATTERN, METRIC_PATTERN, ErrorResponse, RateLimit, RateStatus

logger = Logger(child=True)

JSON = "application/json"
CSV = "text/csv; charset=utf-8"
_acting: ContextVar[DeveloperResolver | None] = ContextVar("developers", default=None)
"""The developers the request being resolved acts for (see `developers`): a variable of the
request, not of a router's context, which a router shares with whichever app included it last
(the local gateway and the docs function include every router)."""


def wants_csv(accept: str | None) -> bool:
    """Whether an Accept header asks for CSV before JSON (text/csv named, and no JSON type
    listed ahead of it)."""
    if not accept:
        return False
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if "text/csv" not in kinds:
        return False
    first_json = next((i for i, kind in enumerate(kinds) if kind in (JSON, "application/*")), len(kinds))
    return kinds.index("text/csv") < first_json


_ERRORS: dict[int | HTTPStatus, Any] = {
    status: {"description": text, "content": {JSON: {"model": ErrorResponse}}}
    for status, text in (
        (400, "Malformed request"),
        (401, "Missing, unknown or revoked API key"),
        (403, "The key may not act for that developer"),
        (404, "No such developer (a service key naming an unknown developerId)"),
        (415, "The body is not JSON (Content-Type)"),
        (422, "Invalid input"),
        (
            429,
            "A hard limit would be passed (limit_exceeded; Retry-After: until the period resets) or the "
            "plan's enforced rate is used up (rate_limited; Retry-After: until the next minute); "
            "nothing was counted",
        ),
        (503, "DynamoDB kept refusing; retry (with the same idempotency keys)"),
    )
}


_RATE_HEADERS: dict[str, str] = {
    "Limit": "The plan's requestsPerMinute",
    "Remaining": "What is left of it in the current UTC minute (events recorded count against it)",
    "Reset": "Seconds until the current minute ends and Remaining starts over (1-60)",
}
RATE_HEADER_NAMES = tuple(f"{twin}RateLimit-{name}" for twin in ("", "X-") for name in _RATE_HEADERS)


def rate_headers(status: RateStatus | None) -> dict[str, str] | None:
    """RateLimit-Limit/-Remaining/-Reset and their X-RateLimit-* twins (same values); none for
    a plan without requestsPerMinute."""
    if status is None:
        return None
    values = {"Limit": status.limit, "Remaining": status.remaining, "Reset": status.reset}
    return {f"{twin}RateLimit-{name}": str(values[name]) for twin in ("", "X-") for name in _RATE_HEADERS}


_REFUSALS_WITH_RATE = (400, 403, 422, 429)  # the refusals of a request that may know its developer


def _rate_header_docs(absent: str) -> dict[str, Any]:
    return {
        f"{twin}RateLimit-{name}": {
            "description": f"{text}{' (twin of RateLimit-' + name + ')' if twin else ''}. Absent {absent}",
            "schema": {"type": "integer", "minimum": 0},
        }
        for twin in ("", "X-")
        for name, text in _RATE_HEADERS.items()
    }


def ok_responses(
    model: type[BaseModel], description: str, *, developer_scoped: bool = True, csv: bool = False
) -> dict[int | HTTPStatus, Any]:
    """A route's answers: the 200 and every error; a developer-scoped route's 200 carries the
    rate headers, and so do its refusals once the developer is known."""
    ok: dict[str, Any] = {"description": description, "content": {JSON: {"model": model}}}
    if csv:
        ok["content"]["text/csv"] = {"schema": {"type": "string"}}
    if not developer_scoped:
        return {200: ok, **_ERRORS}
    ok["headers"] = _rate_header_docs(
        "when the plan states no requestsPerMinute (or a track request names several developers)"
    )
    refused = _rate_header_docs(
        "when the plan states no requestsPerMinute, or when the request is refused before it gets "
        "to its developer (a malformed request, a developer key tracking, an unknown developerId)"
    )
    errors = {
        status: {**answer, "headers": refused} if status in _REFUSALS_WITH_RATE else answer
        for status, answer in _ERRORS.items()
    }
    return {200: ok, **errors}


def json_response(
    status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> Response[str]:
    """Serialize with exact decimals (the resolver's serializer would turn them into floats)."""
    return Response(status_code=status, content_type=JSON, body=jsonutil.dumps(payload), headers=headers)


class Answer(Protocol):
    """A route's answer model (camelCase or a compat API's snake_case)."""

    def wire(self) -> dict[str, Any]: ...


def rated_response(answer: Answer, rate: RateStatus | None) -> Response[str]:
    """A developer-scoped 200: the answer, with the developer's rate headers."""
    return json_response(200, answer.wire(), headers=rate_headers(rate))


def reported_response(answer: Answer, report: RateLimit) -> Response[str]:
    """A developer-scoped 200 whose rate headers say what the usage read with it reports (its
    `rateLimit`): no read more."""
    return rated_response(answer, status_of(report, clock.now()))


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response[str]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return json_response(status, {"error": error, **(extra or {})}, headers=headers)


def _raw_error(status: int, code: str, message: str) -> dict[str, Any]:
    """An error answer in payload-2.0 form, for refusals made before the resolver runs."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": JSON},
        "body": jsonutil.dumps({"error": {"code": code, "message": message}}),
        "isBase64Encoded": False,
    }


class UsageMeterResolver(APIGatewayHttpResolver):
    """The HTTP API resolver, refusing non-JSON bodies before the validation would parse them
    (a form-encoded body, curl's default, would otherwise read as a form and fail obscurely)."""

    def __init__(self, *, authenticated: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.authenticated = authenticated

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        if self.authenticated:
            # who calls is settled before anything about the request is: an anonymous caller
            # gets 401, never validation details
            try:
                identity_from_authorizer(authorizer_context(event))
            except UsageMeterError as exc:
                return _raw_error(exc.status, exc.code, exc.message)
        headers = event.get("headers") or {}
        content_type = str(headers.get("content-type", "")).split(";")[0].strip().lower()
        if event.get("body") and content_type and content_type != JSON and not content_type.endswith("+json"):
            return _raw_error(
                415, "unsupported_media_type", "send the body as JSON with Content-Type: application/json"
            )
        started = _acting.set(None)
        try:
            return super().resolve(event, context)
        finally:
            _acting.reset(started)


def _refusal_headers(status: int, headers: dict[str, str] | None) -> dict[str, str] | None:
    """The headers of a refusal, with the developer's rate headers when the route acts for a
    known developer (see `developers`): its 4xx answers are developer-scoped too. A 5xx gets
    none (the reads would fail as the request did), nor an answer that has them already (429
    rate_limited); a failed read leaves them out rather than turn the refusal into a 5xx."""
    resolve = _acting.get()
    if resolve is None or not 400 <= status < 500 or "RateLimit-Limit" in (headers or {}):
        return headers
    developer = resolve.acting_for
    if developer is None:
        return headers
    try:
        rate = rate_headers(rate_status(resolve, developer))
    except UsageMeterError as exc:
        logger.warning("rate status unavailable for a refusal", extra={"code": exc.code})
        return headers
    return {**(headers or {}), **(rate or {})} or None


def make_resolver(*, authenticated: bool = True) -> APIGatewayHttpResolver:
    """A resolver with validation on, exact-decimal JSON in, and one error shape for everything."""
    app = UsageMeterResolver(
        authenticated=authenticated, enable_validation=True, json_body_deserializer=jsonutil.loads_object
    )

    @app.exception_handler(UsageMeterError)
    def _domain_error(exc: UsageMeterError) -> Response[str]:
        logger.info("request refused", extra={"code": exc.code, "status": exc.status})
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        if isinstance(exc, RateLimited) and exc.requests_per_minute and exc.retry_after:
            rate = RateStatus(limit=exc.requests_per_minute, remaining=0, reset=exc.retry_after)
            headers.update(rate_headers(rate) or {})
        refusal = _refusal_headers(exc.status, headers or None)
        return error_response(
            exc.status, exc.code, exc.message, exc.details, headers=refusal, extra=exc.extra
        )

    @app.exception_handler(RequestValidationError)
    def _invalid_request(exc: RequestValidationError) -> Response[str]:
        errors = list(exc.errors())
        for e in errors:
            if e.get("type") == "json_invalid":
                reason = str(e.get("ctx", {}).get("error", ""))
                if reason == jsonutil.NOT_AN_OBJECT:
                    return error_response(422, "validation_error", f"body: {reason}")
                return error_response(400, "invalid_json", f"the body is not valid JSON: {reason}")
        message, details = describe_validation(errors, skip=("event", "batch"))
        return error_response(422, "validation_error", message, details)

    @app.exception_handler(ValidationError)
    def _invalid_model(exc: ValidationError) -> Response[str]:
        refused = validation_failed(exc)
        headers = _refusal_headers(422, None)
        return error_response(422, refused.code, refused.message, refused.details, headers=headers)

    @app.exception_handler([binascii.Error, UnicodeDecodeError])
    def _undecodable(exc: Exception) -> Response[str]:
        return error_response(400, "invalid_body", "the body could not be decoded")

    @app.not_found
    def _not_found(exc: NotFoundError) -> Response[str]:
        return error_response(404, "not_found", "no such route")

    return app


def caller(router: APIGatewayHttpRouter) -> Identity:
    """Who calls the route being served, as the authorizer resolved it."""
    return identity_from_authorizer(authorizer_context(router.current_event.raw_event))


def developers(router: APIGatewayHttpRouter) -> DeveloperResolver:
    """The resolver of the developers a developer-scoped route acts for, kept in the request's
    context: once it knows the developer, a refusal carries that developer's rate headers too."""
    resolve = DeveloperResolver(caller(router))
    _acting.set(resolve)
    return resolve


DeveloperIdQuery = Annotated[
    str | None, Query(alias="developerId", pattern=DEVELOPER_ID_PATTERN, description="Service keys only")
]
MetricQuery = Annotated[str | None, Query(pattern=METRIC_PATTERN, description="Only this metric")]
StartDateQuery = Annotated[date | None, Query(alias="startDate", description="First day, inclusive")]
EndDateQuery = Annotated[
    date | None, Query(alias="endDate", description="Last day, inclusive (default today)")
]
GroupByQuery = Annotated[
    str | None,
    Query(
        alias="groupBy",
        max_length=200,
        description="Up to 3 dimensions the metric's meter declares, comma-separated: adds `groups`",
    ),
]
FilterQuery = Annotated[
    list[str] | None,
    Query(
        alias="filter",
        description="DIMENSION:VALUE (repeatable, one value per dimension, at most 3): only the "
        "matching events count",
    ),
]
