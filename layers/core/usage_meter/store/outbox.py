"""Where events go out: the EventBridge bus, the webhook queue (SQS) and the KMS key that
derives webhook secrets. The local stack gives file:// locations instead (a JSON-lines file
for the bus, a folder queue, a key file), so the same handlers run on this machine."""

from __future__ import annotations

import hashlib
import hmac
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from usage_meter import jsonutil
from usage_meter.errors import Busy
from usage_meter.models.alerts import Delivery, Envelope
from usage_meter.settings import MissingSetting, settings
from usage_meter.store import dynamodb, filequeue

SOURCE = "usage-meter"
LOCAL = "file://"
SQS_BATCH = 10
_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 3})


@lru_cache(maxsize=4)
def _client(service: str) -> Any:
    return boto3.client(service, region_name=settings().region, config=_CONFIG)  # type: ignore[call-overload]


dynamodb.on_reset(_client.cache_clear)


def _local(location: str) -> Path | None:
    return Path(location.removeprefix(LOCAL)) if location.startswith(LOCAL) else None


def _queue() -> str:
    queue = settings().webhook_queue
    if queue is None:
        raise MissingSetting(["WEBHOOK_QUEUE_URL"])
    return queue


def put_event(envelope: Envelope) -> None:
    """The event on the stack's bus (detail-type = its type, detail = the envelope)."""
    bus = settings().event_bus
    if bus is None:
        return
    detail = jsonutil.dumps(envelope.wire())
    path = _local(bus)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as log:
            log.write(
                json.dumps({"source": SOURCE, "detail-type": envelope.type, "detail": json.loads(detail)})
                + "\n"
            )
        return
    answer = _client("events").put_events(
        Entries=[{"Source": SOURCE, "DetailType": envelope.type, "Detail": detail, "EventBusName": bus}]
    )
    if answer.get("FailedEntryCount"):
        raise Busy(f"EventBridge refused the event: {answer['Entries'][0].get('ErrorCode')}")


def send_deliveries(deliveries: list[Delivery], delay_s: int = 0) -> None:
    """One message per delivery on the webhook queue."""
    if not deliveries:
        return
    queue = _queue()
    bodies = [jsonutil.dumps(d.model_dump(mode="json")) for d in deliveries]
    folder = _local(queue)
    if folder is not None:
        for body in bodies:
            filequeue.send(folder, body, delay_s)
        return
    for start in range(0, len(bodies), SQS_BATCH):
        chunk = bodies[start : start + SQS_BATCH]
        answer = _client("sqs").send_message_batch(
            QueueUrl=queue,
            Entries=[{"Id": str(i), "MessageBody": b, "DelaySeconds": delay_s} for i, b in enumerate(chunk)],
        )
        if answer.get("Failed"):
            raise Busy(f"SQS refused {len(answer['Failed'])} delivery message(s)")


def retry_later(receipt: str, seconds: int) -> None:
    """Hide a received delivery message until its next attempt (the backoff)."""
    queue = _queue()
    folder = _local(queue)
    if folder is not None:
        filequeue.change_visibility(folder, receipt, seconds)
        return
    _client("sqs").change_message_visibility(QueueUrl=queue, ReceiptHandle=receipt, VisibilityTimeout=seconds)


def mac(message: bytes) -> bytes:
    """HMAC-SHA256 of `message` under the stack's webhook key (KMS GenerateMac; locally the key file)."""
    cfg = settings()
    if cfg.webhook_key_file:
        key = Path(cfg.webhook_key_file).read_bytes()
        return hmac.new(key, message, hashlib.sha256).digest()
    if not cfg.webhook_key_id:
        raise MissingSetting(["WEBHOOK_KEY_ID"])
    answer = _client("kms").generate_mac(
        KeyId=cfg.webhook_key_id, Message=message, MacAlgorithm="HMAC_SHA_256"
    )
    return bytes(answer["Mac"])
