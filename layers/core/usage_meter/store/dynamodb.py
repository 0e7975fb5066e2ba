"""The one DynamoDB client of a container, the translation of its errors, and the deadline.

Every call to DynamoDB goes through this module: throttling and an unreachable DynamoDB
(after botocore's own retries) become `Busy`, a 503 the client may retry with the same
idempotency keys; anything else is a bug and raises.

A request can work to a deadline (`working_to`): no HTTP attempt, botocore's retries
included, starts unless it can end before the deadline, so the function answers what it
knows instead of being killed by Lambda's timeout. The deadline lives in a context
variable set for one invocation and reset after it, never in a module global.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from usage_meter.errors import Busy
from usage_meter.jsonutil import number_text
from usage_meter.settings import region, settings
from usage_meter.store import keys

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

Item = dict[str, "AttributeValueTypeDef"]
NOT_CONFIGURED = (NoRegionError, NoCredentialsError, PartialCredentialsError)
"""botocore errors that mean this process was never given a region or credentials: said as
such (they are not an unreachable DynamoDB, and retrying will not help)."""

RETRYABLE_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}


RETRYABLE_ERRORS = {
    "TransactionInProgressException",
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
}
# ... of which those after which a write may still have been applied (its answer was lost)
MAYBE_APPLIED_ERRORS = {"TransactionInProgressException", "InternalServerError", "ServiceUnavailable"}


CONNECT_TIMEOUT_S = 1
READ_TIMEOUT_S = 2
ATTEMPT_S = CONNECT_TIMEOUT_S + READ_TIMEOUT_S
"""The longest one HTTP attempt can take before botocore gives up on it."""
SAFETY_MARGIN_S = 0.5
"""Kept free at the end of an invocation to build and send the answer."""
COMMIT_OPERATION = "TransactWriteItems"


class DeadlineReached(BotoCoreError):
    """No time is left for another attempt: raised instead of sending it (never retried)."""

    fmt = "no time left for another {operation} attempt before the function's deadline"


@dataclass(frozen=True)
class Deadline:
    """When the DynamoDB work of one invocation must be over (a `time.monotonic()` value)."""

    at: float

    @classmethod
    def within(cls, remaining_ms: int) -> Deadline:
        """The deadline of a Lambda invocation with `remaining_ms` left, minus the safety margin."""
        return cls(time.monotonic() + remaining_ms / 1000 - SAFETY_MARGIN_S)

    def left(self) -> float:
        return self.at - time.monotonic()


_deadline: ContextVar[Deadline | None] = ContextVar("usage_meter_dynamodb_deadline", default=None)


@contextmanager
def working_to(deadline: Deadline | None) -> Iterator[None]:
    """DynamoDB calls inside the block keep to `deadline` (None: no deadline); reset after it."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_for(operation: str) -> bool:
    """Whether one more attempt of `operation` can end before the deadline. A commit needs
    room for two: itself and, if its answer is lost, reading back whether it was applied."""
    deadline = _deadline.get()
    attempts = 2 if operation == COMMIT_OPERATION else 1
    return deadline is None or deadline.left() >= attempts * ATTEMPT_S


def _keep_to_deadline(event_name: str, **_: Any) -> None:
    """botocore's before-send hook: refuse an attempt (a retry too) that could outlast the deadline."""
    operation = event_name.rsplit(".", 1)[-1]
    if not time_for(operation):
        raise DeadlineReached(operation=operation)


@lru_cache(maxsize=1)
def client() -> DynamoDBClient:
    """One client per container; botocore's standard retry mode retries throttles and 5xx,
    each attempt kept to the deadline of the request being served."""
    cfg = settings()
    made = boto3.client(
        "dynamodb",
        region_name=cfg.region,
        endpoint_url=cfg.endpoint_url,
        config=Config(
            retries={"mode": "standard", "total_max_attempts": 3},
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            tcp_keepalive=True,
        ),
    )
    made.meta.events.register("before-send.dynamodb", _keep_to_deadline)
    return made


_forget_on_reset: list[Callable[[], None]] = []


def on_reset(forget: Callable[[], None]) -> None:
    """Have `reset` call `forget` too: for caches of what the tables hold."""
    _forget_on_reset.append(forget)


def reset() -> None:
    """Forget the cached client, settings and what is cached of the tables (tests switch
    endpoints and tables)."""
    client.cache_clear()
    settings.cache_clear()
    for forget in _forget_on_reset:
        forget()


def error_code(exc: ClientError) -> str:
    """The error code of a ClientError ("" when there is none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_condition_failure(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


def new_revision(*, stamped: bool = False) -> AttributeValueTypeDef:
    """A fresh `revision` for an accounts item: any write makes cached copies fail their check
    (`stamped`: the item's revision stamps are written with it, see keys.stamped_revision)."""
    revision = uuid.uuid4().hex
    return {"S": keys.stamped_revision(revision) if stamped else revision}


def text(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def number(value: Decimal | int) -> AttributeValueTypeDef:
    """Numbers in plain notation (1E-9 -> 0.000000001): exact, and understood by every engine."""
    return {"N": number_text(value) if isinstance(value, Decimal) else str(value)}


def to_av(value: Any) -> AttributeValueTypeDef:
    """Plain JSON-ish Python (metadata) to an attribute value; Decimals stay exact."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | Decimal):
        return number(value)
    if isinstance(value, dict):
        return {"M": {str(k): to_av(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"L": [to_av(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__}")


def from_av(value: Any) -> Any:
    ((kind, inner),) = value.items()
    if kind == "S":
        return inner
    if kind == "N":
        number = Decimal(inner)
        return int(number) if number == number.to_integral_value() and "." not in inner else number
    if kind == "BOOL":
        return bool(inner)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: from_av(v) for k, v in inner.items()}
    if kind == "L":
        return [from_av(v) for v in inner]
    raise TypeError(f"unexpected attribute type {kind}")


def call(table: str, operation: str, **kwargs: Any) -> Any:
    """One DynamoDB call on a table: throttling and an unreachable DynamoDB (after botocore's
    own retries) become Busy, a 503 the client may retry; anything else is a bug and raises."""
    return client_call(operation, TableName=table, **kwargs)


def client_call(operation: str, **kwargs: Any) -> Any:
    """One DynamoDB call (tables named in its arguments, e.g. BatchGetItem), its errors as `call`'s."""
    try:
        return getattr(client(), operation)(**kwargs)
    except ClientError as exc:
        if error_code(exc) in RETRYABLE_ERRORS:
            raise Busy("DynamoDB is throttling; retry shortly") from exc
        raise
    except NOT_CONFIGURED:
        raise
    except DeadlineReached as exc:
        raise Busy("the request ran out of time waiting for DynamoDB; retry shortly") from exc
    except BotoCoreError as exc:  # timeouts, connection errors
        raise Busy("DynamoDB could not be reached; retry shortly") from exc


def usage_call(operation: str, **kwargs: Any) -> Any:
    return call(settings().usage_table, operation, **kwargs)


def accounts_call(operation: str, **kwargs: Any) -> Any:
    return call(settings().accounts_table, operation, **kwargs)


def query_range(developer_id: str, low: str, high: str) -> Iterator[dict[str, Any]]:
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
        "ExpressionAttributeValues": {
            ":pk": text(keys.developer_pk(developer_id)),
            ":lo": text(low),
            ":hi": text(high),
        },
        "ConsistentRead": True,
    }
    while True:
        page = usage_call("query", **kwargs)
        yield from page.get("Items", [])
        last = page.get("LastEvaluatedKey")
        if not last:
            return
        kwargs["ExclusiveStartKey"] = last


def get_usage_items(item_keys: list[Item]) -> list[dict[str, Any]]:
    """The usage table's items at these keys that exist, strongly consistent: one BatchGetItem
    (100 keys at most), again for any keys DynamoDB left unprocessed."""
    table = settings().usage_table
    found: list[dict[str, Any]] = []
    request: dict[str, Any] = {table: {"Keys": item_keys, "ConsistentRead": True}}
    while request:
        answer = client_call("batch_get_item", RequestItems=request)
        found.extend(answer.get("Responses", {}).get(table, []))
        request = answer.get("UnprocessedKeys") or {}
    return found


def idempotency_call(operation: str, **kwargs: Any) -> Any:
    return call(settings().idempotency_table, operation, **kwargs)


def stack_outputs(stack_name: str) -> dict[str, str]:
    """A deployed stack's outputs (the admin CLI reads table names from them)."""
    cloudformation = boto3.client("cloudformation", region_name=region())
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", []) if "OutputKey" in o}
