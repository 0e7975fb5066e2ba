"""What Lambda's event source mappings do, for the local stack: the usage table's stream to the
alerts function, the webhook queue to the webhooks function.

`StreamConsumer` reads DynamoDB Local's stream shard by shard, keeps the records the
template's filter criteria pass, invokes the handler with batches shaped as Lambda's, and
checkpoints (to a file, so a consumer killed and started again resumes where the last
finished batch ended, and redelivers the batch it was in, as Lambda does). A batch item
failure retries from that record; a raising handler bisects the batch; retries exhausted, the
records go to a failure file (the on-failure queue). `QueueWorker` receives from the folder
queue and invokes the webhooks handler with SQS-shaped events, deleting what succeeded.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from usage_meter.store import filequeue
from usage_meter_local.events import LambdaContext
from usage_meter_local.handlers import Handler, load_handler
from usage_meter_local.template import StreamSource, function_code, matches

REGION = "us-east-1"
POLL_S = 0.05
QUEUE_VISIBILITY_S = 180  # the template's VisibilityTimeout
QUEUE_MAX_RECEIVES = 12  # the template's maxReceiveCount
RESTART_ERRORS = {"TrimmedDataAccessException", "ExpiredIteratorException"}


def _lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    change = dict(record["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = int(created.timestamp())
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    }


class StreamConsumer:
    """One table's stream into one function, until `stop` (see the module's docstring).

    `duplicate_rate`: the share of batches delivered twice (tests inject duplicates as Lambda
    produces them after a timeout or a lost checkpoint)."""

    def __init__(
        self,
        source: StreamSource,
        table: str,
        endpoint_url: str,
        checkpoint_file: Path,
        *,
        duplicate_rate: float = 0.0,
        handler: Handler | None = None,
    ) -> None:
        self.source = source
        self.table = table
        self.checkpoint_file = checkpoint_file
        self.duplicate_rate = duplicate_rate
        self.handler = handler or load_handler(*function_code(source.function))
        kwargs: dict[str, Any] = {"endpoint_url": endpoint_url, "region_name": REGION}
        self.dynamodb = boto3.client("dynamodb", **kwargs)
        self.streams = boto3.client("dynamodbstreams", **kwargs)
        self.checkpoints: dict[str, str] = (
            json.loads(checkpoint_file.read_text()) if checkpoint_file.is_file() else {}
        )
        self.failure_file = checkpoint_file.with_name(f"{source.function}-failures.jsonl")
        # invocations so far, kept beside the checkpoints (a bench reads them across restarts)
        self.invocations_file = checkpoint_file.with_suffix("").with_suffix(".invocations")
        self.invocations = int(self.invocations_file.read_text()) if self.invocations_file.is_file() else 0

    def run(self, stop: threading.Event, ready: Any = None) -> None:
        """Poll until `stop`; `ready` (an Event) is set once the first poll is done."""
        arn = self.dynamodb.describe_table(TableName=self.table)["Table"]["LatestStreamArn"]
        iterators: dict[str, str | None] = {}
        polls = 0
        while not stop.is_set():
            if ready is not None and polls:
                ready.set()
            polls += 1
            shards = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
            busy = False
            for shard in shards:
                shard_id = shard["ShardId"]
                if shard_id not in iterators:
                    iterators[shard_id] = self._iterator(arn, shard_id)
                iterator = iterators[shard_id]
                if iterator is None:
                    continue
                try:
                    page = self.streams.get_records(ShardIterator=iterator, Limit=1000)
                except ClientError as exc:
                    # DynamoDB Local answers TrimmedDataAccess for TRIM_HORIZON on an empty
                    # shard; an iterator also expires: start again from the checkpoint
                    if exc.response.get("Error", {}).get("Code") not in RESTART_ERRORS:
                        raise
                    iterators[shard_id] = self._iterator(arn, shard_id)
                    continue
                iterators[shard_id] = page.get("NextShardIterator")
                records = page.get("Records", [])
                if records:
                    busy = True
                    self._deliver(shard_id, [_lambda_record(r, arn) for r in records], stop)
            if not busy:
                stop.wait(POLL_S)

    def _iterator(self, arn: str, shard_id: str) -> str | None:
        after = self.checkpoints.get(shard_id)
        kwargs: dict[str, Any] = {"StreamArn": arn, "ShardId": shard_id}
        if after:
            kwargs |= {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
        else:
            kwargs |= {"ShardIteratorType": "TRIM_HORIZON"}
        iterator: str | None = self.streams.get_shard_iterator(**kwargs).get("ShardIterator")
        return iterator

    def _deliver(self, shard_id: str, records: list[dict[str, Any]], stop: threading.Event) -> None:
        kept = [r for r in records if any(matches(p, r) for p in self.source.patterns)]
        for start in range(0, len(kept), self.source.batch_size):
            if stop.is_set():
                return
            self._batch(kept[start : start + self.source.batch_size], stop)
            if random.random() < self.duplicate_rate:
                self._batch(kept[start : start + self.source.batch_size], stop)
        if records and not stop.is_set():
            self._checkpoint(shard_id, records[-1]["dynamodb"]["SequenceNumber"])

    def _batch(self, batch: list[dict[str, Any]], stop: threading.Event, retries: int = 0) -> None:
        """Invoke until every record succeeded, bisecting on errors, like the mapping."""
        while batch and not stop.is_set():
            try:
                self.invocations += 1
                self.invocations_file.write_text(str(self.invocations))
                answer = self.handler({"Records": batch}, LambdaContext(self.source.function, timeout_s=60))
            except Exception:
                if self.source.bisect and len(batch) > 1:
                    half = len(batch) // 2
                    self._batch(batch[:half], stop, retries)
                    self._batch(batch[half:], stop, retries)
                    return
                answer = {"batchItemFailures": [{"itemIdentifier": batch[0]["dynamodb"]["SequenceNumber"]}]}
            failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
            if not failed:
                return
            first = min(i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] in failed)
            retries += 1
            if 0 <= self.source.maximum_retry_attempts < retries:
                with self.failure_file.open("a") as out:
                    out.write(json.dumps({"records": batch[first:]}, default=str) + "\n")
                return
            batch = batch[first:]
            stop.wait(min(1.0, 0.05 * 2**retries))

    def _checkpoint(self, shard_id: str, sequence: str) -> None:
        self.checkpoints[shard_id] = sequence
        staged = self.checkpoint_file.with_suffix(".tmp")
        staged.write_text(json.dumps(self.checkpoints))
        staged.replace(self.checkpoint_file)


def _sqs_record(message: filequeue.Received) -> dict[str, Any]:
    return {
        "messageId": message.message_id,
        "receiptHandle": message.receipt,
        "body": message.body,
        "attributes": {
            "ApproximateReceiveCount": str(message.receives),
            "SentTimestamp": str(message.sent_ms),
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:local-webhooks",
        "awsRegion": REGION,
    }


class QueueWorker:
    """The folder queue into the webhooks function (batches of 10, failures left to reappear)."""

    def __init__(self, folder: Path, handler: Handler | None = None) -> None:
        self.folder = folder
        self.handler = handler or load_handler(*function_code("WebhooksFunction"))
        self.invocations = 0

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            received = filequeue.receive(self.folder, 10, QUEUE_VISIBILITY_S, QUEUE_MAX_RECEIVES)
            if not received:
                stop.wait(POLL_S)
                continue
            self.invocations += 1
            answer = self.handler(
                {"Records": [_sqs_record(m) for m in received]},
                LambdaContext("WebhooksFunction", timeout_s=30),
            )
            failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
            for message in received:
                if message.message_id not in failed:
                    filequeue.delete(self.folder, message.receipt)


def in_background(
    name: str, target: Callable[[threading.Event], None], stop: threading.Event
) -> threading.Thread:
    thread = threading.Thread(target=target, args=(stop,), name=name, daemon=True)
    thread.start()
    return thread


def consume(
    environment: dict[str, str],
    function: str,
    table: str,
    checkpoint_file: str,
    duplicate_rate: float = 0.0,
    ready: Any = None,
) -> None:
    """A stream consumer process (tests kill it and start another on the same checkpoints)."""
    import os

    from usage_meter.store import dynamodb as store_db
    from usage_meter_local.template import stream_sources

    os.environ.update(environment)
    store_db.reset()
    (source,) = [s for s in stream_sources() if s.function == function]
    consumer = StreamConsumer(
        source,
        table,
        environment["DYNAMODB_ENDPOINT_URL"],
        Path(checkpoint_file),
        duplicate_rate=duplicate_rate,
    )
    consumer.run(threading.Event(), ready)
