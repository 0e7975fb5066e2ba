"""/compat/glyphnet: Glyphnet's `GET /v1/usage`, as its documented examples read it (the
glyphnet function's route)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from usage_meter.domain.compat import glyphnet_usage
from usage_meter.http.resolver import DeveloperIdQuery, developers, ok_responses, reported_response
from usage_meter.models.compat import GlyphnetUsage
from usage_meter.settings import settings

router = APIGatewayHttpRouter()
TAG = "Glyphnet compatible"


@router.get(
    "/compat/glyphnet/v1/usage",
    summary="Glyphnet: usage statistics of the organization",
    description=(
        "Glyphnet's `GET /v1/usage` (key in X-API-Key or Authorization). current_usage is the "
        "requests meter's usage in the window (template parameter GlyphnetRequestsMeter, default "
        "api_calls); monthly_limit, remaining and percentage_used describe the billing month; "
        "breakdown is by the requests meter's first dimension; daily carries verified_claims and "
        "avg_confidence from the `glyphnet` catalog's meters."
    ),
    responses=ok_responses(GlyphnetUsage, "Usage in Glyphnet's snake_case fields"),
    tags=[TAG],
)
def get_usage(
    developer_id: DeveloperIdQuery = None,
    period: Annotated[
        Literal["day", "week", "month"] | None, Query(description="Default: month (the billing month)")
    ] = None,
    start_date: Annotated[date | None, Query(description="First day (ISO 8601 date), inclusive")] = None,
    end_date: Annotated[
        date | None, Query(description="Last day (ISO 8601 date), inclusive (default today)")
    ] = None,
) -> Response[str]:
    answer, current = glyphnet_usage(
        developers(router),
        requests_meter=settings().glyphnet_requests_meter,
        developer_id=developer_id,
        period=period,
        start_date=start_date,
        end_date=end_date,
    )
    return reported_response(answer, current.rate_limit)
