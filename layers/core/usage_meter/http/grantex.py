"""/compat/grantex: Grantex's usage API, for its SDK's `client.usage` (the grantex function's routes)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from usage_meter.domain.compat import grantex_history, grantex_usage
from usage_meter.domain.ratelimit import rate_status
from usage_meter.http.resolver import (
    DeveloperIdQuery,
    developers,
    ok_responses,
    rated_response,
    reported_response,
)
from usage_meter.models.compat import GrantexHistory, GrantexUsage

router = APIGatewayHttpRouter()
TAG = "Grantex compatible"


@router.get(
    "/compat/grantex/v1/usage",
    summary="Grantex: usage of the current billing period",
    description=(
        "Grantex's `GET /v1/usage`: the meters token_exchanges, authorizations and verifications "
        "(the `grantex` plan catalog) as integers; totalRequests counts every event of the period. "
        "For the grantex SDK with base_url=<api>/compat/grantex."
    ),
    responses=ok_responses(GrantexUsage, "The period's counts, camelCase as Grantex answers"),
    tags=[TAG],
)
def get_usage(developer_id: DeveloperIdQuery = None) -> Response[str]:
    answer, current = grantex_usage(developers(router), developer_id)
    return reported_response(answer, current.rate_limit)


@router.get(
    "/compat/grantex/v1/usage/history",
    summary="Grantex: daily usage of the last N days",
    description="Grantex's `GET /v1/usage/history?days=N`: one entry per day, oldest first, zero-filled.",
    responses=ok_responses(GrantexHistory, "Daily counts, oldest first"),
    tags=[TAG],
)
def get_history(
    developer_id: DeveloperIdQuery = None,
    days: Annotated[int | None, Query(ge=1, le=366, description="Last N days (default 30)")] = None,
) -> Response[str]:
    resolve = developers(router)
    answer = grantex_history(resolve, developer_id, days)
    return rated_response(answer, rate_status(resolve, answer.developer_id))
