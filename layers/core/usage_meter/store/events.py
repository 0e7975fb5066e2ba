"""Idempotency records and the commit of events: records and counter changes in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from usage_meter import jsonutil
from usage_meter.errors import Busy
from usage_meter.models.records import CounterIncrement, IdempotencyRecord
from usage_meter.settings import settings
from usage_meter.store import dynamodb, keys
from usage_meter.store.counters import increment_item
from usage_meter.store.dynamodb import (
    COMMIT_OPERATION,
    MAYBE_APPLIED_ERRORS,
    RETRYABLE_ERRORS,
    RETRYABLE_REASONS,
    Item,
    from_av,
    number,
    text,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef


class CommitCancelled(Exception):
    """A TransactWriteItems was cancelled; nothing of it was applied.

    `duplicates` maps the position of an idempotency record in the commit to the record that
    already holds the key; `retryable` is true when contention or throttling took part.
    `over_limit` maps the position of a ceiling-conditioned increment that would have passed
    its ceiling to the counter's value at that moment.
    """

    def __init__(
        self,
        duplicates: dict[int, IdempotencyRecord],
        retryable: bool,
        over_limit: dict[int, Decimal] | None = None,
    ) -> None:
        super().__init__(f"transaction cancelled: {len(duplicates)} duplicate(s), retryable={retryable}")
        self.duplicates = duplicates
        self.retryable = retryable
        self.over_limit = over_limit or {}


class CommitInDoubt(Exception):
    """A TransactWriteItems got no definite answer: throttled (`maybe_applied` false), or a
    timeout, a 5xx or TransactionInProgressException, after which it may have been applied.
    Retry it unchanged (same ClientRequestToken, same items) or read back whether it was.
    `out_of_time` says the deadline refused another attempt."""

    def __init__(self, maybe_applied: bool, out_of_time: bool = False) -> None:
        super().__init__(
            f"transaction outcome unknown: maybe_applied={maybe_applied}, out_of_time={out_of_time}"
        )
        self.maybe_applied = maybe_applied
        self.out_of_time = out_of_time


def _record_item(record: IdempotencyRecord) -> Item:
    item: Item = {
        "pk": text(keys.idempotency_pk(record.developer_id, record.idempotency_key)),
        "developerId": text(record.developer_id),
        "idempotencyKey": text(record.idempotency_key),
        "payloadHash": text(record.payload_hash),
        "metric": text(record.metric),
        "quantity": number(record.quantity),
        "eventTime": text(record.event_time),
        "day": text(record.day),
        "period": text(record.period),
        "recordedAt": text(record.recorded_at),
        "expiresAt": number(record.expires_at),
    }
    if record.commit_token is not None:
        item["commitToken"] = text(record.commit_token)
    if record.metadata is not None:
        # kept as JSON text: any JSON the API accepts is storable (DynamoDB's number range,
        # empty keys and nesting limits do not apply to a string)
        item["metadata"] = text(jsonutil.dumps(record.metadata))
    return item


def _metadata(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if "S" in value:
        parsed: dict[str, Any] = jsonutil.loads(value["S"])
        return parsed
    return dict(from_av(value))  # records written before metadata was kept as text


def _record_from_item(item: dict[str, Any]) -> IdempotencyRecord:
    plain = {k: from_av(v) for k, v in item.items()}
    return IdempotencyRecord(
        developer_id=plain["developerId"],
        idempotency_key=plain["idempotencyKey"],
        payload_hash=plain["payloadHash"],
        metric=plain["metric"],
        quantity=Decimal(item["quantity"]["N"]),
        event_time=plain["eventTime"],
        day=plain["day"],
        period=plain["period"],
        recorded_at=plain["recordedAt"],
        expires_at=int(plain["expiresAt"]),
        metadata=_metadata(item.get("metadata")),
        commit_token=plain.get("commitToken"),
    )


def commit_events(
    records: Sequence[IdempotencyRecord],
    increments: Sequence[CounterIncrement],
    *,
    token: str,
    now_epoch: int,
    updated_at: str,
) -> None:
    """Write idempotency records and counter increments in one TransactWriteItems: all or nothing.

    A record is put only if its key is new or its earlier record has expired (checked here,
    not left to TTL deletion). `token` is the ClientRequestToken: DynamoDB applies a
    transaction once per token (for ten minutes), so a retry of a call whose answer was lost
    (botocore's, or the caller's after CommitInDoubt) must send the same token and items.
    """
    cfg = settings()
    items: list[TransactWriteItemTypeDef] = [
        {
            "Put": {
                "TableName": cfg.idempotency_table,
                "Item": _record_item(record),
                "ConditionExpression": "attribute_not_exists(pk) OR expiresAt < :now",
                "ExpressionAttributeValues": {":now": number(now_epoch)},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        for record in records
    ]
    items.extend(increment_item(inc, updated_at) for inc in increments)
    try:
        dynamodb.client().transact_write_items(TransactItems=items, ClientRequestToken=token)
    except ClientError as exc:
        code = dynamodb.error_code(exc)
        if code == "TransactionCanceledException":
            raise _cancelled(exc, records, increments) from exc
        if code in RETRYABLE_ERRORS:
            raise CommitInDoubt(maybe_applied=code in MAYBE_APPLIED_ERRORS) from exc
        raise
    except dynamodb.NOT_CONFIGURED:
        raise
    except dynamodb.DeadlineReached as exc:  # an earlier attempt of this call may have been applied
        raise CommitInDoubt(maybe_applied=True, out_of_time=True) from exc
    except BotoCoreError as exc:  # timeouts, connection errors after botocore's own retries
        raise CommitInDoubt(maybe_applied=True) from exc


def time_to_commit() -> bool:
    """Whether the deadline leaves time for one more commit attempt (and reading it back)."""
    return dynamodb.time_for(COMMIT_OPERATION)


def written_by(record: IdempotencyRecord, token: str) -> bool | None:
    """Whether the transaction with `token` was applied, judged by one record it puts (a
    transaction is all or nothing): True or False, None when DynamoDB cannot tell now."""
    try:
        held = get_record(record.developer_id, record.idempotency_key)
    except Busy:
        return None
    return held is not None and held.commit_token == token


def _cancelled(
    exc: ClientError, records: Sequence[IdempotencyRecord], increments: Sequence[CounterIncrement]
) -> CommitCancelled:
    """Read the per-item cancellation reasons: which keys exist already, which ceilings were hit,
    and was there contention."""
    reasons: list[Any] = list(exc.response.get("CancellationReasons", []))
    duplicates: dict[int, IdempotencyRecord] = {}
    over_limit: dict[int, Decimal] = {}
    retryable = not reasons  # no reasons at all: treat as contention
    for position, reason in enumerate(reasons):
        code = reason.get("Code", "None")
        if code == "ConditionalCheckFailed" and position >= len(records):
            index = position - len(records)
            item = reason.get("Item") or {}
            if "consumed" in item:
                over_limit[index] = Decimal(item["consumed"]["N"])
            else:  # no old value to judge by: read it again on the next attempt
                retryable = True
        elif code == "ConditionalCheckFailed" and position < len(records):
            held = (
                _record_from_item(reason["Item"])
                if reason.get("Item")
                else get_record(records[position].developer_id, records[position].idempotency_key)
            )
            if held is None:  # expired and deleted in between: simply try again
                retryable = True
            else:
                duplicates[position] = held
        elif code in RETRYABLE_REASONS:
            retryable = True
        elif code not in ("None", ""):
            raise RuntimeError(f"transaction item {position} failed with {code}: {reason.get('Message')}")
    return CommitCancelled(duplicates, retryable, over_limit)


def get_record(developer_id: str, idempotency_key: str) -> IdempotencyRecord | None:
    """The idempotency record of a key (strongly consistent), or None."""
    answer = dynamodb.idempotency_call(
        "get_item",
        Key={"pk": text(keys.idempotency_pk(developer_id, idempotency_key))},
        ConsistentRead=True,
    )
    item = answer.get("Item")
    return _record_from_item(item) if item else None
