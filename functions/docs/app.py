"""GET /v1/openapi.json: the OpenAPI document of the whole API (public, no key needed)."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from usage_meter.http.docs import openapi_document

logger = Logger()
_DOCUMENT = openapi_document()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
def lambda_handler(event: dict[str, object], context: LambdaContext) -> dict[str, object]:
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "Cache-Control": "public, max-age=300"},
        "body": _DOCUMENT,
    }
