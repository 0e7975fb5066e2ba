"""GET /v1/usage/events, POST /v1/usage/events/cancel and /amend: the events function's routes."""

from __future__ import annotations

from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from usage_meter.domain.corrections import correct
from usage_meter.domain.eventlog import DEFAULT_LIMIT, list_events
from usage_meter.domain.ratelimit import rate_status
from usage_meter.http.resolver import (
    JSON,
    DeveloperIdQuery,
    MetricQuery,
    caller,
    developers,
    json_response,
    ok_responses,
    rated_response,
)
from usage_meter.models.wire import (
    MAX_EVENT_PAGE,
    AmendIn,
    CancelIn,
    CorrectionResponse,
    ErrorResponse,
    EventLogStatus,
    EventsResponse,
)

router = APIGatewayHttpRouter()

_CORRECTION_ERRORS: dict[int | HTTPStatus, Any] = {
    409: {
        "description": "The event is cancelled (event_cancelled, on amend) or has taken its 20 corrections "
        "(too_many_revisions)",
        "content": {JSON: {"model": ErrorResponse}},
    },
}


@router.get(
    "/v1/usage/events",
    summary="The event log: a developer's events, newest first",
    description=(
        "Every event kept in the retention window (36 days), with its status (recorded, cancelled, "
        "amended) and corrections. Pages of at most 100; `nextCursor` continues the same listing "
        "(a cursor from another developer or other filters is 400 invalid_cursor)."
    ),
    responses=ok_responses(EventsResponse, "One page of events, newest first"),
    tags=["events"],
)
def get_events(
    developer_id: DeveloperIdQuery = None,
    metric: MetricQuery = None,
    status: Annotated[EventLogStatus | None, Query(description="Only events with this status")] = None,
    start: Annotated[
        datetime | None, Query(alias="from", description="Events stamped at or after (RFC 3339)")
    ] = None,
    end: Annotated[
        datetime | None, Query(alias="to", description="Events stamped at or before (RFC 3339)")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_EVENT_PAGE, description="Events per page (default 50)")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=2048, description="nextCursor of the page before")] = None,
) -> Response[str]:
    resolve = developers(router)
    answer = list_events(
        resolve,
        developer_id=developer_id,
        metric=metric,
        status=status,
        start=start,
        end=end,
        limit=limit,
        cursor=cursor,
    )
    return rated_response(answer, rate_status(resolve, resolve(developer_id)))


@router.post(
    "/v1/usage/events/cancel",
    summary="Cancel a recorded event (service keys)",
    description=(
        "Exactly once: the event becomes `cancelled` and every counter it moved moves back, in one "
        "transaction. 404 event_not_found for an unknown, expired or other developer's key."
    ),
    responses={
        **ok_responses(CorrectionResponse, "cancelled, or already_cancelled", developer_scoped=False),
        **_CORRECTION_ERRORS,
    },
    tags=["events"],
)
def post_cancel(body: Annotated[CancelIn, Body()]) -> Response[str]:
    return json_response(200, correct(caller(router), body).wire())


@router.post(
    "/v1/usage/events/amend",
    summary="Amend a recorded event's quantity or metadata (service keys)",
    description=(
        "The old contribution out and the new one in, in one transaction; the event keeps its "
        "revisions. An amendment past a hard limit is 429 limit_exceeded; to the same values, 200 "
        "`unchanged`."
    ),
    responses={
        **ok_responses(CorrectionResponse, "amended, or unchanged", developer_scoped=False),
        **_CORRECTION_ERRORS,
    },
    tags=["events"],
)
def post_amend(body: Annotated[AmendIn, Body()]) -> Response[str]:
    return json_response(200, correct(caller(router), body).wire())
