"""GET /v1/meters: the meters function's route."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from usage_meter.domain.meters import MAX_METERS, listing
from usage_meter.http.resolver import json_response, ok_responses
from usage_meter.models.wire import MetersResponse

router = APIGatewayHttpRouter()


@router.get(
    "/v1/meters",
    summary="The meters: how each metric's events become usage",
    description=(
        "Every meter, active and archived, sorted by name (at most "
        f"{MAX_METERS:,}). Readable by any key, developer or service."
    ),
    responses=ok_responses(MetersResponse, "Every meter, sorted by name", developer_scoped=False),
    tags=["meters"],
)
def get_meters() -> Response[str]:
    return json_response(200, listing().wire())
