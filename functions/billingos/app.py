"""/compat/billingos/v1: BillingOS's track, metrics and entitlement check over the same pipeline."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from usage_meter.http import billingos
from usage_meter.http.resolver import make_resolver

logger = Logger()
tracer = Tracer()
metrics = Metrics()  # the track pipeline's EventsRecorded, EventsRejected, ...
app = make_resolver()
app.include_router(billingos.router)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, object], context: LambdaContext) -> dict[str, object]:
    return app.resolve(event, context)
