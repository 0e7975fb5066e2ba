"""GET /v1/usage: the current function's route."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from usage_meter.domain.dimensions import parse_query
from usage_meter.domain.usage import current_usage
from usage_meter.http.resolver import (
    DeveloperIdQuery,
    EndDateQuery,
    FilterQuery,
    GroupByQuery,
    MetricQuery,
    StartDateQuery,
    developers,
    ok_responses,
    reported_response,
)
from usage_meter.models.wire import CurrentUsageResponse

router = APIGatewayHttpRouter()


@router.get(
    "/v1/usage",
    summary="Usage of the current billing period",
    responses=ok_responses(CurrentUsageResponse, "Usage per metric with limits and remaining quota"),
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
    group_by: GroupByQuery = None,
    filters: FilterQuery = None,
) -> Response[str]:
    query = parse_query(group_by, filters)
    answer = current_usage(
        developers(router),
        developer_id=developer_id,
        metric=metric,
        period=period,
        start_date=start_date,
        end_date=end_date,
        query=query,
    )
    # the headers say what the body's rateLimit says
    return reported_response(answer, answer.rate_limit)
