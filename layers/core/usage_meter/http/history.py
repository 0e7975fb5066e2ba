"""GET /v1/usage/history: the history function's route."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from usage_meter.domain.dimensions import history_csv, parse_query
from usage_meter.domain.ratelimit import rate_status
from usage_meter.domain.usage import usage_history
from usage_meter.http.resolver import (
    CSV,
    DeveloperIdQuery,
    EndDateQuery,
    FilterQuery,
    GroupByQuery,
    MetricQuery,
    StartDateQuery,
    developers,
    json_response,
    ok_responses,
    rate_headers,
    wants_csv,
)
from usage_meter.models.wire import HistoryResponse

router = APIGatewayHttpRouter()


@router.get(
    "/v1/usage/history",
    summary="Daily or monthly usage history, zero-filled",
    responses=ok_responses(
        HistoryResponse,
        "Entries oldest first, one per day (or month) of the range. With `Accept: text/csv`: "
        "`date,metric,<dimension…>,consumed,events` (RFC 4180; a text cell starting with = + - @ "
        "tab, CR or ' gets a leading ')",
        csv=True,
    ),
    tags=["usage"],
)
def get_history(
    developer_id: DeveloperIdQuery = None,
    metric: MetricQuery = None,
    days: Annotated[int | None, Query(ge=1, le=366, description="Last N days (default 30)")] = None,
    start_date: StartDateQuery = None,
    end_date: EndDateQuery = None,
    granularity: Annotated[Literal["day", "month"], Query()] = "day",
    group_by: GroupByQuery = None,
    filters: FilterQuery = None,
) -> Response[str]:
    query = parse_query(group_by, filters)
    as_csv = wants_csv(router.current_event.headers.get("accept"))
    resolve = developers(router)
    answer = usage_history(
        resolve,
        developer_id=developer_id,
        metric=metric,
        days=days,
        start_date=start_date,
        end_date=end_date,
        granularity=granularity,
        query=query,
        per_metric_events=as_csv,
    )
    headers = rate_headers(rate_status(resolve, answer.developer_id))
    if as_csv:
        return Response(
            status_code=200,
            content_type=CSV,
            body=history_csv(answer, query.group_by),
            headers={**(headers or {}), "Content-Disposition": 'attachment; filename="usage-history.csv"'},
        )
    return json_response(200, answer.wire(), headers=headers)
