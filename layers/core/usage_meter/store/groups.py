"""Dimension groups: a dimensioned meter's day counter per combination of values, and the count
of a day's combinations that keeps them under the cardinality bound."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from usage_meter.models.records import CombinationClaim, GroupCounter, GroupIncrement
from usage_meter.settings import settings
from usage_meter.store import dynamodb, keys
from usage_meter.store.dynamodb import number, text

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

COMBINATIONS = "combinations"


def group_item(inc: GroupIncrement, updated_at: str) -> TransactWriteItemTypeDef:
    """The Update of one combination's day counter: its quantity and events added, on the
    condition that the item exists (or, for its first writer, that it does not)."""
    update: Any = {
        "TableName": settings().usage_table,
        "Key": {
            "pk": text(keys.developer_pk(inc.developer_id)),
            "sk": text(keys.group_sk(inc.metric, inc.day, inc.digest)),
        },
        "UpdateExpression": "ADD #c :q, #e :e SET #d = :d, #m = :m, #day = :day, #v = :v, #g = :g, #u = :u",
        "ConditionExpression": "attribute_not_exists(#e)" if inc.new else "attribute_exists(#e)",
        "ExpressionAttributeNames": {
            "#c": "consumed",
            "#e": "events",
            "#d": "developerId",
            "#m": "metric",
            "#day": "day",
            "#v": "dimensions",
            "#g": "aggregation",
            "#u": "updatedAt",
        },
        "ExpressionAttributeValues": {
            ":q": number(inc.quantity),
            ":e": number(inc.events),
            ":d": text(inc.developer_id),
            ":m": text(inc.metric),
            ":day": text(inc.day),
            ":v": {"M": {name: text(value) for name, value in inc.values.items()}},
            ":g": text(inc.aggregation),
            ":u": text(updated_at),
        },
    }
    return {"Update": update}


def claim_item(claim: CombinationClaim, updated_at: str) -> TransactWriteItemTypeDef:
    """The Update of a day's count of combinations, only while it stays at most its ceiling
    (the old count comes back when it would not)."""
    return {
        "Update": {
            "TableName": settings().usage_table,
            "Key": {
                "pk": text(keys.developer_pk(claim.developer_id)),
                "sk": text(keys.combinations_sk(claim.metric, claim.day)),
            },
            "UpdateExpression": "ADD #n :n SET #m = :m, #u = :u",
            "ConditionExpression": "attribute_not_exists(#n) OR #n <= :room",
            "ExpressionAttributeNames": {"#n": COMBINATIONS, "#m": "metric", "#u": "updatedAt"},
            "ExpressionAttributeValues": {
                ":n": number(claim.combinations),
                ":room": number(claim.ceiling - claim.combinations),
                ":m": text(claim.metric),
                ":u": text(updated_at),
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def combinations_of(item: dict[str, Any]) -> int | None:
    """The count of combinations in a claim's old item (None: not there)."""
    return int(item[COMBINATIONS]["N"]) if COMBINATIONS in item else None


def group_counters(developer_id: str, metric: str, first_day: str, last_day: str) -> list[GroupCounter]:
    """Every combination's day counters of one meter from first_day to last_day inclusive: one
    paginated Query (at most the cardinality bound, plus "(other)", per day)."""
    return [
        GroupCounter(
            metric=item["metric"]["S"],
            day=item["day"]["S"],
            values={name: value["S"] for name, value in item.get("dimensions", {}).get("M", {}).items()},
            consumed=Decimal(item["consumed"]["N"]),
            events=int(item["events"]["N"]),
        )
        for item in dynamodb.query_range(developer_id, *keys.group_range(metric, first_day, last_day))
    ]


def group_exists(developer_id: str, metric: str, day: str, digest: str) -> bool:
    """Whether a combination has its day counter (strongly consistent)."""
    sk = keys.group_sk(metric, day, digest)
    return any(True for _ in dynamodb.query_range(developer_id, sk, sk))


def combinations(developer_id: str, metric: str, day: str) -> int:
    """A day's stored count of combinations (0: none yet)."""
    sk = keys.combinations_sk(metric, day)
    return next((combinations_of(item) or 0 for item in dynamodb.query_range(developer_id, sk, sk)), 0)
