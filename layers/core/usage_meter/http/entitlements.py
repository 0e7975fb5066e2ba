"""GET /v1/entitlements/{metric}: the entitlements function's route."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from usage_meter.domain.ratelimit import rate_status
from usage_meter.domain.usage import entitlement
from usage_meter.http.resolver import DeveloperIdQuery, developers, ok_responses, rated_response
from usage_meter.models.wire import METRIC_PATTERN, EntitlementResponse

router = APIGatewayHttpRouter()


@router.get(
    "/v1/entitlements/<metric>",
    summary="May the developer use a metric now?",
    description="hasAccess is false when the plan does not include the metric or a hard limit is used up.",
    responses=ok_responses(EntitlementResponse, "Access, consumption and what remains in the billing period"),
    tags=["usage"],
)
def get_entitlement(
    metric: Annotated[str, Path(pattern=METRIC_PATTERN)],
    developer_id: DeveloperIdQuery = None,
) -> Response[str]:
    resolve = developers(router)
    answer = entitlement(resolve, metric, developer_id=developer_id)
    status = rate_status(resolve, resolve(developer_id))  # resolved already: no read
    return rated_response(answer, status)
