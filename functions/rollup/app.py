"""The rollup: month summaries from the day counters, on a schedule or on demand.

EventBridge invokes it with its scheduled event (the default window: the backdating window
up to tomorrow); `{"date": "2026-11-20"}` rolls up that date's whole month. It answers with
the run's report and raises when any developer-month failed, so that the invocation is
retried and, retries exhausted, lands in the dead-letter queue.
"""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from usage_meter.domain import rollup
from usage_meter.models.records import RollupRequest

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = RollupRequest.model_validate(event)
    logger.info(
        "rollup started",
        extra={"source": event.get("source", "on-demand"), "date": str(request.date or "")},
    )
    report = rollup.run(request)
    if report.failed:
        raise rollup.RollupFailed(
            f"{report.failed} of {report.developer_months} developer-months failed; "
            f"{report.summaries_written} summaries written"
        )
    answer: dict[str, Any] = report.model_dump(mode="json", by_alias=True)
    return answer
