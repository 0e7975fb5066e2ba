"""GET /compat/glyphnet/v1/usage: Glyphnet's usage answer over the same reads."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from usage_meter.http import glyphnet
from usage_meter.http.resolver import make_resolver

logger = Logger()
tracer = Tracer()
app = make_resolver()
app.include_router(glyphnet.router)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, object], context: LambdaContext) -> dict[str, object]:
    return app.resolve(event, context)
