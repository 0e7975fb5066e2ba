"""POST /v1/usage/events: the track function's route."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from usage_meter.domain.ratelimit import track_rate_status
from usage_meter.domain.tracking import track
from usage_meter.http.resolver import JSON, developers, json_response, ok_responses, rate_headers
from usage_meter.models.wire import ErrorResponse, TrackBody, TrackResponse

router = APIGatewayHttpRouter()


@router.post(
    "/v1/usage/events",
    summary="Record usage events",
    description=(
        'One event, or {"events": [...]} with 1-100. An event with an idempotency key is counted '
        "exactly once; a duplicate answers the original outcome."
    ),
    responses={
        **ok_responses(TrackResponse, "One result per event, in order"),
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
    resolve = developers(router)  # one read of each profile and plan for both steps
    answer = track(
        resolve.identity,
        body,
        header_key=idempotency_key,
        time_left_ms=router.lambda_context.get_remaining_time_in_millis(),
        resolve=resolve,
    )
    payload = answer.wire()
    payload["results"] = [r.model_dump(by_alias=True, exclude_none=True) for r in answer.results]
    if answer.usage is None:
        payload.pop("usage")
    return json_response(200, payload, headers=rate_headers(track_rate_status(resolve, body)))
