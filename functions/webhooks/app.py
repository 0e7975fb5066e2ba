"""The webhook queue: each message is one event for one endpoint, delivered signed.

Messages of a batch are delivered concurrently, so a receiver that hangs costs only its own
timeout. A failed attempt hides its message until the next one (backoff) and is reported
alone (partial batch response); after the last attempt SQS moves it to the dead-letter queue.
"""

import asyncio
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from usage_meter.domain import webhooks
from usage_meter.models.alerts import Delivery

logger = Logger()
metrics = Metrics()
# every message failing is an answer too (each was hidden until its own next attempt): not an error
processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


async def record_handler(record: SQSRecord) -> None:
    delivery = Delivery.model_validate_json(record.body)
    receives = int(record.attributes.approximate_receive_count or 1)
    await asyncio.to_thread(webhooks.deliver, delivery, receives, record.receipt_handle)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    answer = async_process_partial_response(
        event=event,
        record_handler=record_handler,
        processor=processor,
        context=context,
    )
    return dict(answer)
