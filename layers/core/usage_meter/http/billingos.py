"""/compat/billingos: BillingOS's usage tracking, metrics and entitlement check (the billingos
function's routes)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from usage_meter.domain.compat import billing_entitlement, billing_metrics, billing_track
from usage_meter.domain.ratelimit import rate_status, track_rate_status
from usage_meter.http.resolver import JSON, developers, ok_responses, rated_response, reported_response
from usage_meter.models.compat import BillingEntitlement, BillingMetrics, BillingTrackIn, BillingTrackResponse
from usage_meter.models.wire import DEVELOPER_ID_PATTERN, METRIC_PATTERN, ErrorResponse

router = APIGatewayHttpRouter()
TAG = "BillingOS compatible"

CustomerIdQuery = Annotated[
    str | None,
    Query(
        alias="customerId",
        pattern=DEVELOPER_ID_PATTERN,
        description="The developer (required with a service key; a developer key names itself or nobody)",
    ),
]


@router.post(
    "/compat/billingos/v1/usage/track",
    summary="BillingOS: track usage",
    description=(
        "BillingOS's trackUsage (service keys): customerId is the developer, featureKey the "
        "metric; quantity > 0; counted exactly once per idempotencyKey."
    ),
    responses={
        **ok_responses(
            BillingTrackResponse, "Recorded (or a duplicate of a recorded event), with the usage block"
        ),
        409: {
            "description": "Idempotency key reused with another payload",
            "content": {JSON: {"model": ErrorResponse}},
        },
    },
    tags=[TAG],
)
def post_track(body: Annotated[BillingTrackIn, Body()]) -> Response[str]:
    resolve = developers(router)
    answer, event = billing_track(
        resolve, body, time_left_ms=router.lambda_context.get_remaining_time_in_millis()
    )
    return rated_response(answer, track_rate_status(resolve, event))


@router.get(
    "/compat/billingos/v1/usage/metrics",
    summary="BillingOS: usage metrics of a customer",
    description="BillingOS's getUsageMetrics: every feature of the billing period (or only featureKey).",
    responses=ok_responses(BillingMetrics, "One entry per feature, sorted by key"),
    tags=[TAG],
)
def get_metrics(
    customer_id: CustomerIdQuery = None,
    feature_key: Annotated[
        str | None, Query(alias="featureKey", pattern=METRIC_PATTERN, description="Only this feature")
    ] = None,
) -> Response[str]:
    answer, current = billing_metrics(developers(router), customer_id, feature_key)
    return reported_response(answer, current.rate_limit)


@router.get(
    "/compat/billingos/v1/entitlements/check",
    summary="BillingOS: may the customer use a feature now?",
    description="BillingOS's checkEntitlement: has_access is false outside the plan or when a hard limit is used up.",
    responses=ok_responses(BillingEntitlement, "Access, usage, limit and what remains in the billing period"),
    tags=[TAG],
)
def get_entitlement(
    feature_key: Annotated[str, Query(alias="featureKey", pattern=METRIC_PATTERN, description="The feature")],
    customer_id: CustomerIdQuery = None,
) -> Response[str]:
    resolve = developers(router)
    answer = billing_entitlement(resolve, customer_id, feature_key)
    return rated_response(answer, rate_status(resolve, answer.customer_id))
