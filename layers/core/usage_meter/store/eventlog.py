"""The event log (EventLogIndex over the idempotency records) and the correction transaction.

EventLogIndex lists a developer's records under 16 partitions ("<developer>#<shard>", the
shard a hash of the idempotency key) sorted by "<eventTime>#<key>": a busy developer's log is
spread over 16 index partitions, and a page of it is the newest of the 16, merged. The index
is eventually consistent: what a correction must know exactly (the events of a window) is read
back from the table itself, strongly consistent, and checked against the window's counter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from usage_meter import jsonutil
from usage_meter.models.records import (
    CombinationClaim,
    CounterCorrection,
    GroupIncrement,
    IdempotencyRecord,
    UniqueMarker,
)
from usage_meter.settings import settings
from usage_meter.store import dynamodb, groups, keys
from usage_meter.store.counters import marker_item
from usage_meter.store.dynamodb import RETRYABLE_ERRORS, number, text
from usage_meter.store.events import record_from_item

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

EVENT_LOG_INDEX = "EventLogIndex"
MAX_PAGES_PER_SHARD = 4
"""Index pages one shard may read for one page of the log (filters may skip many items): the
page then ends where the least-read shard stopped, with a cursor to go on."""
BATCH_GET = 100


@dataclass
class ShardPage:
    """What one shard gave a page: its matching records, newest first, and where it stopped
    (`frontier`: the logSk of the last item it read, None when it has nothing more)."""

    records: list[IdempotencyRecord]
    frontier: str | None


def _filters(metric: str | None, status: str | None) -> dict[str, Any]:
    """FilterExpression arguments for the log's metric and status filters (none: empty)."""
    parts: list[str] = []
    names: dict[str, str] = {}
    values: dict[str, AttributeValueTypeDef] = {}
    if metric is not None:
        parts.append("#m = :m")
        names["#m"], values[":m"] = "metric", text(metric)
    if status is not None:
        parts.append("#s = :s")
        names["#s"], values[":s"] = "status", text(status)
    if not parts:
        return {}
    return {"FilterExpression": " AND ".join(parts), "ExpressionAttributeNames": names, "Values": values}


def shard_page(
    developer_id: str,
    shard: int,
    low: str,
    high: str,
    limit: int,
    metric: str | None = None,
    status: str | None = None,
) -> ShardPage:
    """Up to `limit` records of one log shard with logSk in [low, high], newest first, matching
    the filters; at most MAX_PAGES_PER_SHARD index pages read."""
    filters = _filters(metric, status)
    values: dict[str, AttributeValueTypeDef] = {
        ":p": text(keys.event_log_pk(developer_id, shard)),
        ":lo": text(low),
        ":hi": text(high),
        **filters.pop("Values", {}),
    }
    kwargs: dict[str, Any] = {
        "IndexName": EVENT_LOG_INDEX,
        "KeyConditionExpression": "logPk = :p AND logSk BETWEEN :lo AND :hi",
        "ExpressionAttributeValues": values,
        "ScanIndexForward": False,
        "Limit": limit,
        **filters,
    }
    found: list[IdempotencyRecord] = []
    for _ in range(MAX_PAGES_PER_SHARD):
        page = dynamodb.idempotency_call("query", **kwargs)
        found.extend(record_from_item(item) for item in page.get("Items", []))
        last = page.get("LastEvaluatedKey")
        if not last:
            return ShardPage(found, None)
        if len(found) >= limit:
            break
        kwargs["ExclusiveStartKey"] = last
    return ShardPage(found, str(last["logSk"]["S"]))


def _log_keys(developer_id: str, metric: str, low: str, high: str) -> Iterator[str]:
    """The table keys of a metric's records in a logSk range, from every shard (index pages)."""
    for shard in range(keys.EVENT_LOG_SHARDS):
        kwargs: dict[str, Any] = {
            "IndexName": EVENT_LOG_INDEX,
            "KeyConditionExpression": "logPk = :p AND logSk BETWEEN :lo AND :hi",
            "FilterExpression": "#m = :m",
            "ProjectionExpression": "pk",
            "ExpressionAttributeNames": {"#m": "metric"},
            "ExpressionAttributeValues": {
                ":p": text(keys.event_log_pk(developer_id, shard)),
                ":lo": text(low),
                ":hi": text(high),
                ":m": text(metric),
            },
        }
        while True:
            page = dynamodb.idempotency_call("query", **kwargs)
            yield from (str(item["pk"]["S"]) for item in page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if not last:
                break
            kwargs["ExclusiveStartKey"] = last


def window_records(developer_id: str, metric: str, low: str, high: str) -> list[IdempotencyRecord]:
    """Every record of one metric in a logSk range, as the table holds it now: keys from the
    index (16 shards), then the records themselves read strongly consistent (BatchGetItem,
    100 a call). A record the index does not list yet is missing: the caller checks the count."""
    pks = list(dict.fromkeys(_log_keys(developer_id, metric, low, high)))
    records: list[IdempotencyRecord] = []
    table = settings().idempotency_table
    for start in range(0, len(pks), BATCH_GET):
        chunk = pks[start : start + BATCH_GET]
        wanted: Any = {table: {"Keys": [{"pk": text(pk)} for pk in chunk], "ConsistentRead": True}}
        while wanted:
            answer = dynamodb.client_call("batch_get_item", RequestItems=wanted)
            records.extend(record_from_item(item) for item in answer.get("Responses", {}).get(table, []))
            wanted = answer.get("UnprocessedKeys") or None
    return records


# ---- the correction transaction --------------------------------------------------------------


class CorrectionConflict(Exception):
    """The correction's transaction was cancelled (a condition failed: the record or a counter
    is not as read, or contention): nothing was applied; read again and retry."""


class CorrectionInDoubt(Exception):
    """No definite answer (a timeout, a 5xx, throttling): retry it unchanged, or read back
    whether the record carries the correction's token."""


def _counter_item(change: CounterCorrection, updated_at: str) -> TransactWriteItemTypeDef:
    """The Update of one counter a correction moves, asserting what the correction read."""
    names = {"#c": "consumed", "#e": "events", "#u": "updatedAt"}
    values: dict[str, AttributeValueTypeDef] = {":e": number(change.events), ":u": text(updated_at)}
    adds, sets, removes, conditions = ["#e :e"], ["#u = :u"], [], []
    if change.scope in ("day", "month"):  # the rollup and concurrent corrections see it moved
        names["#k"], values[":one"] = "corrections", number(1)
        adds.append("#k :one")
    if change.consumed is not None:
        values[":set"] = number(change.consumed)
        sets.append("#c = :set")
    else:
        values[":q"] = number(change.quantity)
        adds.insert(0, "#c :q")
    if change.latest_key is not None:
        names["#l"] = "latestKey"
        if change.latest_key:
            values[":lk"] = text(change.latest_key)
            sets.append("#l = :lk")
        else:
            removes.append("#l")
    conditions.extend(_assertions(change, names, values))
    expression = f"ADD {', '.join(adds)} SET {', '.join(sets)}"
    if removes:
        expression += f" REMOVE {', '.join(removes)}"
    update: Any = {
        "TableName": settings().usage_table,
        "Key": {
            "pk": text(keys.developer_pk(change.developer_id)),
            "sk": text(keys.counter_sk(change.scope, change.key, change.metric, change.shard)),
        },
        "UpdateExpression": expression,
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }
    return {"Update": update}


def _assertions(
    change: CounterCorrection, names: dict[str, str], values: dict[str, AttributeValueTypeDef]
) -> list[str]:
    """The conditions of a counter's change: it exists (a correction only moves back what an
    event moved), and holds what was read or stays within its bounds."""
    conditions = ["attribute_exists(#e)"]
    if change.expect_events is not None:
        values[":xe"] = number(change.expect_events)
        conditions.append("#e = :xe")
    if change.expect_consumed is not None:
        values[":xc"] = number(change.expect_consumed)
        conditions.append("#c = :xc")
    if change.expect_latest_key is not None:
        latest = text(change.expect_latest_key) if change.expect_latest_key else None
        conditions.append(_held_or_absent("#l", "latestKey", latest, names, values))
    if change.expect_corrections is not None:
        corrections = number(change.expect_corrections) if change.expect_corrections else None
        conditions.append(_held_or_absent("#k", "corrections", corrections, names, values))
    if change.low is not None:
        values[":lo"] = number(change.low)
        conditions.append("#c >= :lo")
    if change.high is not None:
        values[":hi"] = number(change.high)
        conditions.append("#c <= :hi")
    return conditions


def _held_or_absent(
    name: str,
    attribute: str,
    expected: AttributeValueTypeDef | None,
    names: dict[str, str],
    values: dict[str, AttributeValueTypeDef],
) -> str:
    """The condition that an optional attribute still holds what was read: `expected`, or
    nothing (None: it was absent, as on a counter no correction has touched yet)."""
    names[name] = attribute
    if expected is None:
        return f"attribute_not_exists({name})"
    placeholder = f":x{name[1:]}"
    values[placeholder] = expected
    return f"{name} = {placeholder}"


def _marker_delete(marker: UniqueMarker) -> TransactWriteItemTypeDef:
    return {
        "Delete": {
            "TableName": settings().usage_table,
            "Key": {
                "pk": text(keys.developer_pk(marker.developer_id)),
                "sk": text(keys.marker_sk(marker.scope, marker.window, marker.metric, marker.digest)),
            },
            "ConditionExpression": "attribute_exists(pk)",
        }
    }


def _summary_mark(developer_id: str, month: str, metric: str, at: str) -> TransactWriteItemTypeDef:
    """Mark a closed month's summary `adjusted`: a correction changed the month after it closed."""
    return {
        "Update": {
            "TableName": settings().usage_table,
            "Key": {"pk": text(keys.developer_pk(developer_id)), "sk": text(keys.summary_sk(month, metric))},
            "UpdateExpression": "SET #a = :t, #at = :at",
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeNames": {"#a": "adjusted", "#at": "adjustedAt"},
            "ExpressionAttributeValues": {":t": {"BOOL": True}, ":at": text(at)},
        }
    }


def _record_update(record: IdempotencyRecord, read_revision: int, now_epoch: int) -> TransactWriteItemTypeDef:
    """The record's new revision, only if it still holds the revision the correction read."""
    values: dict[str, AttributeValueTypeDef] = {
        ":s": text(record.status),
        ":r": number(record.revision),
        ":rs": text(jsonutil.dumps([r.model_dump(mode="json", exclude_none=True) for r in record.revisions])),
        ":q": number(record.quantity),
        ":t": text(record.correction_token or ""),
        ":read": number(read_revision),
        ":now": number(now_epoch),
    }
    sets = ["#s = :s", "#r = :r", "#rs = :rs", "#q = :q", "#t = :t"]
    removes = []
    names = {"#s": "status", "#r": "revision", "#rs": "revisions", "#q": "quantity", "#t": "correctionToken"}
    names["#x"], names["#md"] = "expiresAt", "metadata"
    if record.metadata is not None:
        values[":md"] = text(jsonutil.dumps(record.metadata))
        sets.append("#md = :md")
    else:
        removes.append("#md")
    if record.dimensions is not None:
        names["#dm"] = "dimensions"
        values[":dm"] = {"M": {name: text(value) for name, value in record.dimensions.items()}}
        sets.append("#dm = :dm")
    expression = f"SET {', '.join(sets)}" + (f" REMOVE {', '.join(removes)}" if removes else "")
    revision_held = "#r = :read" if read_revision else "(attribute_not_exists(#r) OR #r = :read)"
    return {
        "Update": {
            "TableName": settings().idempotency_table,
            "Key": {"pk": text(keys.idempotency_pk(record.developer_id, record.idempotency_key))},
            "UpdateExpression": expression,
            "ConditionExpression": f"{revision_held} AND #x >= :now",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


@dataclass
class CorrectionWrite:
    """Everything one correction writes, in one TransactWriteItems."""

    record: IdempotencyRecord  # as it will be
    read_revision: int
    counters: Sequence[CounterCorrection]
    markers_added: Sequence[UniqueMarker]
    markers_removed: Sequence[UniqueMarker]
    groups: Sequence[GroupIncrement]
    claims: Sequence[CombinationClaim]
    adjusted: Sequence[tuple[str, str]]  # (month, metric) of closed summaries to mark
    token: str
    now_epoch: int
    at: str

    def items(self) -> list[TransactWriteItemTypeDef]:
        d = self.record.developer_id
        items = [_record_update(self.record, self.read_revision, self.now_epoch)]
        items.extend(_counter_item(c, self.at) for c in self.counters)
        items.extend(marker_item(m) for m in self.markers_added)
        items.extend(_marker_delete(m) for m in self.markers_removed)
        items.extend(groups.group_item(g, self.at) for g in self.groups)
        items.extend(groups.claim_item(c, self.at) for c in self.claims)
        items.extend(_summary_mark(d, month, metric, self.at) for month, metric in self.adjusted)
        return items


def commit_correction(write: CorrectionWrite) -> None:
    """Apply a correction: the record's new revision and every counter change, all or nothing."""
    try:
        dynamodb.client().transact_write_items(TransactItems=write.items(), ClientRequestToken=write.token)
    except ClientError as exc:
        code = dynamodb.error_code(exc)
        if code == "TransactionCanceledException":
            raise CorrectionConflict(str(exc)) from exc
        if code in RETRYABLE_ERRORS:
            raise CorrectionInDoubt(code) from exc
        raise
    except dynamodb.NOT_CONFIGURED:
        raise
    except BotoCoreError as exc:  # timeouts, connection errors, the deadline
        raise CorrectionInDoubt(str(exc)) from exc


def summary_closed(developer_id: str, month: str, metric: str) -> bool:
    """Whether the rollup closed this month's summary of the metric (strongly consistent)."""
    sk = keys.summary_sk(month, metric)
    return any(item.get("closed", {}).get("BOOL") for item in dynamodb.query_range(developer_id, sk, sk))


def day_markers_with(developer_id: str, metric: str, first_day: str, last_day: str, digest: str) -> set[str]:
    """The days from first_day to last_day whose unique_count marker of `metric` holds `digest`
    (one Query over the range's day markers of the metric: a key cannot be filtered on)."""
    low, high = keys.marker_range("day", first_day, last_day)
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
        "FilterExpression": "#m = :m",
        "ExpressionAttributeNames": {"#m": "metric"},
        "ExpressionAttributeValues": {
            ":pk": text(keys.developer_pk(developer_id)),
            ":lo": text(low),
            ":hi": text(high),
            ":m": text(metric),
        },
        "ConsistentRead": True,
    }
    days: set[str] = set()
    while True:
        page = dynamodb.usage_call("query", **kwargs)
        for item in page.get("Items", []):
            _, _, day, _, held = str(item["sk"]["S"]).split("#", 4)
            if held == digest:
                days.add(day)
        last = page.get("LastEvaluatedKey")
        if not last:
            return days
        kwargs["ExclusiveStartKey"] = last
