"""The rollup's reads and writes: developers active on a day, and month summaries.

The rollup finds the developers active on a day through ActivityIndex (sparse, KEYS_ONLY:
only day counters carry activeDay = "<day>#<shard>"), one Query per day and shard, and
stores month summaries (sk "S#<YYYY-MM>#<metric>") as absolute values: an UpdateItem that
SETs every attribute, never ADD, so writing a summary twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from usage_meter.models.records import MonthSummary
from usage_meter.store import dynamodb, keys
from usage_meter.store.dynamodb import number, text

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef


ACTIVITY_INDEX = "ActivityIndex"


def active_developers(day: str, shard: int) -> Iterator[list[str]]:
    """Developers with a day counter on `day` listed under one ActivityIndex shard, a page at a time.

    A developer appears once per metric it used that day; each page is deduplicated, pages
    are not (the caller keeps what it has seen). The index is eventually consistent: a
    counter written a moment ago may be missing, and the next run finds it.
    """
    kwargs: dict[str, Any] = {
        "IndexName": ACTIVITY_INDEX,
        "KeyConditionExpression": "activeDay = :a",
        "ExpressionAttributeValues": {":a": text(keys.activity_shard_key(day, shard))},
        "ProjectionExpression": "pk",
    }
    while True:
        page = dynamodb.usage_call("query", **kwargs)
        ids = dict.fromkeys(keys.developer_of_pk(item["pk"]["S"]) for item in page.get("Items", []))
        if ids:
            yield list(ids)
        last = page.get("LastEvaluatedKey")
        if not last:
            return
        kwargs["ExclusiveStartKey"] = last


def _summary(item: dict[str, Any]) -> MonthSummary:
    return MonthSummary(
        developer_id=item["developerId"]["S"],
        month=item["month"]["S"],
        metric=item["metric"]["S"],
        consumed=Decimal(item["consumed"]["N"]),
        events=int(item["events"]["N"]),
        days=int(item["days"]["N"]),
        closed=bool(item["closed"]["BOOL"]),
        rolled_up_at=item["rolledUpAt"]["S"],
        corrections=int(item["corrections"]["N"]) if "corrections" in item else 0,
        adjusted=bool(item.get("adjusted", {}).get("BOOL", False)),
    )


def month_summaries(developer_id: str, month: str) -> list[MonthSummary]:
    """Every metric's stored month summary of a developer for one month: one Query."""
    return [_summary(i) for i in dynamodb.query_range(developer_id, *keys.summary_range(month))]


def put_summary(summary: MonthSummary) -> bool:
    """SET a month summary to absolute values, unless what is stored is as new or newer.

    Counters only grow between corrections, so a summary with more corrections, or as many and
    more events, was read later: the write is conditional on the stored one having fewer
    corrections, or as many and fewer events (or as many, with a different sum or day count,
    or still open when this one is closed). A slower concurrent run therefore never puts an
    older sum back. The `adjusted` mark a correction put on a closed month stays. Returns False
    when the condition kept what was stored.
    """
    values: dict[str, AttributeValueTypeDef] = {
        ":d": text(summary.developer_id),
        ":mo": text(summary.month),
        ":m": text(summary.metric),
        ":c": number(summary.consumed),
        ":e": number(summary.events),
        ":n": number(summary.days),
        ":cl": {"BOOL": summary.closed},
        ":u": text(summary.rolled_up_at),
        ":k": number(summary.corrections),
    }
    same_events_but = "#c <> :c OR #n <> :n"
    if summary.closed:
        values[":open"] = {"BOOL": False}
        same_events_but += " OR #cl = :open"
    as_many = f"(attribute_not_exists(#k) OR #k = :k) AND (#e < :e OR (#e = :e AND ({same_events_but})))"
    condition = f"attribute_not_exists(#e) OR ({as_many})"
    if summary.corrections:
        condition += " OR attribute_not_exists(#k) OR #k < :k"
    try:
        dynamodb.usage_call(
            "update_item",
            Key={
                "pk": text(keys.developer_pk(summary.developer_id)),
                "sk": text(keys.summary_sk(summary.month, summary.metric)),
            },
            UpdateExpression=(
                "SET #d = :d, #mo = :mo, #m = :m, #c = :c, #e = :e, #n = :n, #cl = :cl, #u = :u, #k = :k"
            ),
            ConditionExpression=condition,
            ExpressionAttributeNames={
                "#d": "developerId",
                "#mo": "month",
                "#k": "corrections",
                "#m": "metric",
                "#c": "consumed",
                "#e": "events",
                "#n": "days",
                "#cl": "closed",
                "#u": "rolledUpAt",
            },
            ExpressionAttributeValues=values,
        )
    except ClientError as exc:
        if dynamodb.is_condition_failure(exc):
            return False
        raise
    return True
