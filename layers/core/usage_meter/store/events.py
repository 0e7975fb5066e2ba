"""Idempotency records and the commit of events: records and counter changes in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from usage_meter import jsonutil
from usage_meter.errors import Busy
from usage_meter.models.records import (
    AccountCheck,
    CombinationClaim,
    CounterIncrement,
    GroupIncrement,
    IdempotencyRecord,
    MetricClaim,
    UniqueMarker,
)
from usage_meter.settings import settings
from usage_meter.store import accounts, catalog, dynamodb, groups, keys
from usage_meter.store.catalog import CatalogSlot
from usage_meter.store.counters import increment_item, marker_item
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
    `over_limit` maps the position of a conditioned counter change that failed (a ceiling, a
    level's bounds, a max or a latest value already passed) to the counter's value at that
    moment, and `latest_keys` to its latest meter's order key. `catalogued` lists the (developer,
    metric) claims whose metric was in the catalog already; `catalog_sizes` the size of each
    developer's catalog that a claim would have taken past its ceiling; `seen` the unique_count
    values a window had seen already; `groups_flipped` the positions of combination counters
    whose existence was not as asserted, `combinations` a day's stored count of combinations by
    the position of the claim it refused.
    """

    def __init__(self, retryable: bool) -> None:
        super().__init__("transaction cancelled")
        self.retryable = retryable
        self.duplicates: dict[int, IdempotencyRecord] = {}
        self.over_limit: dict[int, Decimal] = {}
        self.latest_keys: dict[int, str] = {}
        self.catalogued: list[tuple[str, str]] = []
        self.catalog_sizes: dict[str, int] = {}
        self.seen: list[UniqueMarker] = []
        self.groups_flipped: list[int] = []
        self.combinations: dict[int, int] = {}
        self.stale = False  # an account the transaction relied on has changed

    def __str__(self) -> str:
        return (
            f"transaction cancelled: {len(self.duplicates)} duplicate(s), {len(self.over_limit)} "
            f"ceiling(s), {len(self.catalogued) + len(self.catalog_sizes)} catalog claim(s), "
            f"retryable={self.retryable}"
        )


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
        # the event log (EventLogIndex): the developer's shard, and the log's order
        "logPk": text(keys.event_log_pk(record.developer_id, keys.event_log_shard(record.idempotency_key))),
        "logSk": text(keys.event_log_sk(record.event_time, record.idempotency_key)),
        "status": text(record.status),
    }
    if record.commit_token is not None:
        item["commitToken"] = text(record.commit_token)
    if record.counter_shard is not None:
        item["counterShard"] = number(record.counter_shard)
    if record.minute_shard:
        item["minuteShard"] = number(record.minute_shard)
    if record.dimensions is not None:
        item["dimensions"] = {"M": {name: text(value) for name, value in record.dimensions.items()}}
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


def record_from_item(item: dict[str, Any]) -> IdempotencyRecord:
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
        dimensions=plain.get("dimensions"),
        status=plain.get("status", "recorded"),
        revision=int(plain.get("revision", 0)),
        revisions=jsonutil.loads(plain["revisions"]) if "revisions" in plain else [],
        correction_token=plain.get("correctionToken"),
        counter_shard=int(plain["counterShard"]) if "counterShard" in plain else None,
        minute_shard=int(plain.get("minuteShard", 0)),
    )


def commit_events(
    records: Sequence[IdempotencyRecord],
    increments: Sequence[CounterIncrement],
    claims: Sequence[MetricClaim] = (),
    markers: Sequence[UniqueMarker] = (),
    group_changes: Sequence[GroupIncrement] = (),
    combinations: Sequence[CombinationClaim] = (),
    checks: Sequence[AccountCheck] = (),
    *,
    token: str,
    now_epoch: int,
    updated_at: str,
) -> None:
    """Write idempotency records, counter increments and metric catalog claims in one
    TransactWriteItems: all or nothing.

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
    items.extend(catalog.claim_items(claims, updated_at))
    items.extend(marker_item(marker) for marker in markers)
    items.extend(groups.group_item(change, updated_at) for change in group_changes)
    items.extend(groups.claim_item(claim, updated_at) for claim in combinations)
    items.extend(accounts.check_item(check) for check in checks)  # last: see _cancelled
    try:
        dynamodb.client().transact_write_items(TransactItems=items, ClientRequestToken=token)
    except ClientError as exc:
        code = dynamodb.error_code(exc)
        if code == "TransactionCanceledException":
            slots = catalog.slots(claims)
            raise _cancelled(
                exc, records, len(increments), slots, markers, len(group_changes), len(checks)
            ) from exc
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
    exc: ClientError,
    records: Sequence[IdempotencyRecord],
    increments: int,
    slots: list[CatalogSlot],
    markers: Sequence[UniqueMarker] = (),
    group_changes: int = 0,
    checks: int = 0,
) -> CommitCancelled:
    """Read the per-item cancellation reasons: which keys exist already, which ceilings were hit,
    which catalog claims failed, which account checks (the last `checks` items) failed, and was
    there contention."""
    reasons: list[Any] = list(exc.response.get("CancellationReasons", []))
    cancelled = CommitCancelled(retryable=not reasons)  # no reasons at all: treat as contention
    for position, reason in enumerate(reasons):
        code = reason.get("Code", "None")
        if code == "ConditionalCheckFailed" and position >= len(reasons) - checks:
            cancelled.stale = True
        elif code == "ConditionalCheckFailed":
            past_claims = position - len(records) - increments - len(slots)
            if past_claims >= 0:
                _after_claims(cancelled, past_claims, reason, markers, group_changes)
            else:
                _condition_failed(cancelled, position, reason, records, increments, slots)
        elif code in RETRYABLE_REASONS:
            cancelled.retryable = True
        elif code not in ("None", ""):
            raise RuntimeError(f"transaction item {position} failed with {code}: {reason.get('Message')}")
    return cancelled


def _after_claims(
    cancelled: CommitCancelled,
    position: int,
    reason: dict[str, Any],
    markers: Sequence[UniqueMarker],
    group_changes: int,
) -> None:
    """A failed condition past the catalog claims: a unique value the window has seen, a
    combination whose existence was not as asserted, or a day's combinations at the bound."""
    if position < len(markers):
        cancelled.seen.append(markers[position])
        return
    position -= len(markers)
    if position < group_changes:
        cancelled.groups_flipped.append(position)
        return
    stored = groups.combinations_of(reason.get("Item") or {})
    if stored is None:  # no count came back: try again
        cancelled.retryable = True
    else:
        cancelled.combinations[position - group_changes] = stored


def _condition_failed(
    cancelled: CommitCancelled,
    position: int,
    reason: dict[str, Any],
    records: Sequence[IdempotencyRecord],
    increments: int,
    slots: list[CatalogSlot],
) -> None:
    """Note what one failed condition says; what it cannot say (no old item) is retried."""
    item = reason.get("Item") or {}
    if position < len(records):
        held = (
            record_from_item(item)
            if item
            else get_record(records[position].developer_id, records[position].idempotency_key)
        )
        if held is None:  # expired and deleted in between: simply try again
            cancelled.retryable = True
        else:
            cancelled.duplicates[position] = held
        return
    position -= len(records)
    if position < increments:
        # an absent counter holds 0 (only a level's lower bound can fail on one)
        cancelled.over_limit[position] = Decimal(item["consumed"]["N"]) if "consumed" in item else Decimal(0)
        if "latestKey" in item:
            cancelled.latest_keys[position] = item["latestKey"]["S"]
        return
    developer_id, metric = slots[position - increments]
    size = catalog.size_of(item)
    if metric is not None:
        cancelled.catalogued.append((developer_id, metric))
    elif size is not None:
        cancelled.catalog_sizes[developer_id] = size
    else:
        cancelled.retryable = True


def get_record(developer_id: str, idempotency_key: str) -> IdempotencyRecord | None:
    """The idempotency record of a key (strongly consistent), or None."""
    answer = dynamodb.idempotency_call(
        "get_item",
        Key={"pk": text(keys.idempotency_pk(developer_id, idempotency_key))},
        ConsistentRead=True,
    )
    item = answer.get("Item")
    return record_from_item(item) if item else None
