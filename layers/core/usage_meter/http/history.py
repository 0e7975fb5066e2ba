"""GET /v1/usage/history: the history function's route."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from usage_meter.domain.identity import DeveloperResolver
from usage_meter.domain.ratelimit import rate_status
from usage_meter.domain.usage import usage_history
from usage_meter.http.resolver import (
    DeveloperIdQuery,
    EndDateQuery,
    MetricQuery,
    StartDateQuery,
    caller,
    json_response,
    ok_responses,
    rate_headers,
)
from usage_meter.models.wire import HistoryResponse

router = APIGatewayHttpRouter()


@router.get(
    "/v1/usage/history",
    summary="Daily or monthly usage history, zero-filled",
    responses=ok_responses(HistoryResponse, "Entries oldest first, one per day (or month) of the range"),
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
    resolve = DeveloperResolver(caller(router))
    answer = usage_history(
        resolve,
        developer_id=developer_id,
        metric=metric,
        days=days,
        start_date=start_date,
        end_date=end_date,
        granularity=granularity,
    )
    return json_response(200, answer.wire(), headers=rate_headers(rate_status(resolve, answer.developer_id)))
