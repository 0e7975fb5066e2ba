"""The usage table's stream: threshold crossings and first refusals become alerts, once each.

The event source mapping passes only counter and refusal-flag records (its filter); a record
that fails is reported alone (partial batch response), so the stream retries from it.
"""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from usage_meter.domain import alerts

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    lookup = alerts.Lookup()  # developers and plans read once per batch

    def record_handler(record: DynamoDBRecord) -> None:
        change = record.dynamodb
        assert change is not None
        alerts.on_change(str(change.keys["sk"]), change.old_image, change.new_image, lookup)

    answer = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(answer)
