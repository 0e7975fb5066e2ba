"""HTTP API Lambda authorizer (payload 2.0, simple responses): API key -> developerId and role."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from usage_meter.domain.auth import authorize

logger = Logger()


@logger.inject_lambda_context(log_event=False)  # the event holds the key: never log it
def lambda_handler(event: dict[str, object], context: LambdaContext) -> dict[str, object]:
    headers = event.get("headers") or {}
    outcome = authorize(headers if isinstance(headers, dict) else {})
    logger.info("authorized" if outcome.error is None else "refused", extra={"reason": outcome.error})
    return {"isAuthorized": True, "context": outcome.context()}
