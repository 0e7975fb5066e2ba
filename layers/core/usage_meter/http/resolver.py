"""The HTTP layer shared by every function: resolver factory, routes, error mapping.

Each function's app.py builds a resolver with `make_resolver()` and includes only its own
router, so a cold start imports only what that function needs; the docs function includes
all of them to publish the OpenAPI document.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from datetime import date
from http import HTTPStatus
from typing import Annotated, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from usage_meter import jsonutil
from usage_meter.errors import UsageMeterError
from usage_meter.identity import identity_from_authorizer
from usage_meter.models import (
    DEVELOPER_ID_PATTERN,
    METRIC_PATTERN,
    CurrentUsageResponse,
    EntitlementResponse,
    ErrorResponse,
    HistoryResponse,
    Identity,
    TrackBody,
    TrackResponse,
)
from usage_meter.tracking import track, validation_error_detail
from usage_meter.usage import current_usage, entitlement, usage_history

logger = Logger(child=True)

API_TITLE = "Usage Meter API"
API_VERSION = "1.0.0"
JSON = "application/json"

_ERRORS: dict[int | HTTPStatus, Any] = {
    status: {"description": text, "content": {JSON: {"model": ErrorResponse}}}
    for status, text in (
        (400, "Malformed request"),
        (401, "Missing, unknown or revoked API key"),
        (403, "The key may not act for that developer"),
        (404, "No such developer (a service key naming an unknown developerId)"),
        (415, "The body is not JSON (Content-Type)"),
        (422, "Invalid input"),
        (429, "A hard limit would be passed; nothing was counted (Retry-After: until the period resets)"),
        (503, "DynamoDB kept refusing; retry (with the same idempotency keys)"),
    )
}


def _ok(model: type[BaseModel], description: str) -> dict[int | HTTPStatus, Any]:
    return {200: {"description": description, "content": {JSON: {"model": model}}}, **_ERRORS}


def json_response(
    status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> Response[str]:
    """Serialize with exact decimals (the resolver's serializer would turn them into floats)."""
    return Response(status_code=status, content_type=JSON, body=jsonutil.dumps(payload), headers=headers)


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
            authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
            try:
                identity_from_authorizer(authorizer.get("lambda"))
            except UsageMeterError as exc:
                return _raw_error(exc.status, exc.code, exc.message)
        headers = event.get("headers") or {}
        content_type = str(headers.get("content-type", "")).split(";")[0].strip().lower()
        if event.get("body") and content_type and content_type != JSON and not content_type.endswith("+json"):
            return _raw_error(
                415, "unsupported_media_type", "send the body as JSON with Content-Type: application/json"
            )
        return super().resolve(event, context)


def make_resolver(*, authenticated: bool = True) -> APIGatewayHttpResolver:
    """A resolver with validation on, exact-decimal JSON in, and one error shape for everything."""
    app = UsageMeterResolver(
        authenticated=authenticated, enable_validation=True, json_body_deserializer=jsonutil.loads_object
    )

    @app.exception_handler(UsageMeterError)
    def _domain_error(exc: UsageMeterError) -> Response[str]:
        logger.info("request refused", extra={"code": exc.code, "status": exc.status})
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return error_response(
            exc.status, exc.code, exc.message, exc.details, headers=headers, extra=exc.extra
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
        details = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p not in ("event", "batch")),
                "message": e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in errors
        ]
        message = "; ".join(f"{d['field']}: {d['message']}" for d in details) or "invalid request"
        return error_response(422, "validation_error", message, details)

    @app.exception_handler(ValidationError)
    def _invalid_model(exc: ValidationError) -> Response[str]:
        detail = validation_error_detail(exc)
        return error_response(422, detail.code, detail.message, detail.details)

    @app.exception_handler([binascii.Error, UnicodeDecodeError])
    def _undecodable(exc: Exception) -> Response[str]:
        return error_response(400, "invalid_body", "the body could not be decoded")

    @app.not_found
    def _not_found(exc: NotFoundError) -> Response[str]:
        return error_response(404, "not_found", "no such route")

    return app


def _identity(router: APIGatewayHttpRouter) -> Identity:
    authorizer = router.current_event.request_context.authorizer
    return identity_from_authorizer(authorizer.get_lambda if authorizer else None)


DeveloperIdQuery = Annotated[
    str | None, Query(alias="developerId", pattern=DEVELOPER_ID_PATTERN, description="Service keys only")
]
MetricQuery = Annotated[str | None, Query(pattern=METRIC_PATTERN, description="Only this metric")]
StartDateQuery = Annotated[date | None, Query(alias="startDate", description="First day, inclusive")]
EndDateQuery = Annotated[
    date | None, Query(alias="endDate", description="Last day, inclusive (default today)")
]

# ---- POST /v1/usage/events ---------------------------------------------------------------

track_router = APIGatewayHttpRouter()


@track_router.post(
    "/v1/usage/events",
    summary="Record usage events",
    description=(
        'One event, or {"events": [...]} with 1-100. An event with an idempotency key is counted '
        "exactly once; a duplicate answers the original outcome."
    ),
    responses={
        **_ok(TrackResponse, "One result per event, in order"),
        409: {
            "description": "Idempotency key reused with another payload",
            "content": {JSON: {"model": ErrorResponse}},
        },
    },
    tags=["usage"],
)
def post_events(
    body: Annotated[TrackBody, Body()],
    idempotency_key: Annotated[
        str | None,
        Header(alias="idempotency-key", min_length=1, max_length=255, description="Single event only"),
    ] = None,
) -> Response[str]:
    answer = track(_identity(track_router), body, header_key=idempotency_key)
    payload = answer.wire()
    payload["results"] = [r.model_dump(by_alias=True, exclude_none=True) for r in answer.results]
    if answer.usage is None:
        payload.pop("usage")
    return json_response(200, payload)


# ---- GET /v1/usage -------------------------------------------------------------------------

current_router = APIGatewayHttpRouter()


@current_router.get(
    "/v1/usage",
    summary="Usage of the current billing period",
    responses=_ok(CurrentUsageResponse, "Usage per metric with limits and remaining quota"),
    tags=["usage"],
)
def get_current(
    developer_id: DeveloperIdQuery = None,
    metric: MetricQuery = None,
    period: Annotated[
        Literal["day", "week", "month"] | None, Query(description="Default: billing period")
    ] = None,
    start_date: StartDateQuery = None,
    end_date: EndDateQuery = None,
) -> Response[str]:
    answer = current_usage(
        _identity(current_router),
        developer_id=developer_id,
        metric=metric,
        period=period,
        start_date=start_date,
        end_date=end_date,
    )
    return json_response(200, answer.wire())


# ---- GET /v1/usage/history -----------------------------------------------------------------

history_router = APIGatewayHttpRouter()


@history_router.get(
    "/v1/usage/history",
    summary="Daily or monthly usage history, zero-filled",
    responses=_ok(HistoryResponse, "Entries oldest first, one per day (or month) of the range"),
    tags=["usage"],
)
def get_history(
    developer_id: DeveloperIdQuery = None,
    metric: MetricQuery = None,
    days: Annotated[int | None, Query(ge=1, le=366, description="Last N days (default 30)")] = None,
    start_date: StartDateQuery = None,
    end_date: EndDateQuery = None,
    granularity: Annotated[Literal["day", "month"], Query()] = "day",
) -> Response[str]:
    answer = usage_history(
        _identity(history_router),
        developer_id=developer_id,
        metric=metric,
        days=days,
        start_date=start_date,
        end_date=end_date,
        granularity=granularity,
    )
    return json_response(200, answer.wire())


# ---- GET /v1/entitlements/{metric} -----------------------------------------------------------

entitlements_router = APIGatewayHttpRouter()


@entitlements_router.get(
    "/v1/entitlements/<metric>",
    summary="May the developer use a metric now?",
    description="hasAccess is false when the plan does not include the metric or a hard limit is used up.",
    responses=_ok(EntitlementResponse, "Access, consumption and what remains in the billing period"),
    tags=["usage"],
)
def get_entitlement(
    metric: Annotated[str, Path(pattern=METRIC_PATTERN)],
    developer_id: DeveloperIdQuery = None,
) -> Response[str]:
    answer = entitlement(_identity(entitlements_router), metric, developer_id=developer_id)
    return json_response(200, answer.wire())


ALL_ROUTERS = (track_router, current_router, history_router, entitlements_router)


def openapi_document() -> str:
    """The whole API's OpenAPI document (what GET /v1/openapi.json serves and openapi.json holds)."""
    app = make_resolver(authenticated=False)
    for router in ALL_ROUTERS:
        app.include_router(router)
    return app.get_openapi_json_schema(
        title=API_TITLE,
        version=API_VERSION,
        description="Exact usage metering: idempotent tracking, current usage, history.",
    )
