"""Counter items: the ADD of an event's changes (with a hard limit's ceiling) and their reads."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from usage_meter.models.records import Counter, CounterIncrement
from usage_meter.settings import settings
from usage_meter.store import dynamodb, keys
from usage_meter.store.dynamodb import number, text

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef


def increment_item(inc: CounterIncrement, updated_at: str) -> TransactWriteItemTypeDef:
    """The Update of one counter: ADD, plus the ceiling condition of a hard limit."""
    names: dict[str, str] = {
        "#c": "consumed",
        "#e": "events",
        "#d": "developerId",
        "#m": "metric",
        "#k": inc.scope,
        "#u": "updatedAt",
        "#g": "aggregation",
    }
    values: dict[str, AttributeValueTypeDef] = {
        ":q": number(inc.quantity),
        ":e": number(inc.events),
        ":d": text(inc.developer_id),
        ":m": text(inc.metric),
        ":k": text(inc.key),
        ":u": text(updated_at),
        ":g": text(inc.aggregation),
    }
    sets = "#d = :d, #m = :m, #k = :k, #u = :u, #g = :g"
    if inc.scope == "day":
        names["#a"] = "activeDay"
        values[":a"] = text(keys.activity_key(inc.key, inc.developer_id))
        sets += ", #a = :a"
    if inc.expires_at is not None:
        names["#x"] = "expiresAt"
        values[":x"] = number(inc.expires_at)
        sets += ", #x = :x"
    update: Any = {
        "TableName": settings().usage_table,
        "Key": {
            "pk": text(keys.developer_pk(inc.developer_id)),
            "sk": text(keys.counter_sk(inc.scope, inc.key, inc.metric)),
        },
        "UpdateExpression": f"ADD #c :q, #e :e SET {sets}",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }
    if inc.ceiling is not None:
        # the limit check and the increment commit together: usage never passes the ceiling
        update["ConditionExpression"] = "attribute_not_exists(#c) OR #c <= :room"
        values[":room"] = number(inc.ceiling - inc.quantity)
        update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    return {"Update": update}


def _counter(item: dict[str, Any]) -> Counter:
    scope = keys.scope_of_sk(item["sk"]["S"])
    return Counter(
        developer_id=item["developerId"]["S"],
        scope=scope,
        key=item[scope]["S"],
        metric=item["metric"]["S"],
        consumed=Decimal(item["consumed"]["N"]),
        events=int(item["events"]["N"]),
        aggregation=item.get("aggregation", {"S": "sum"})["S"],
    )


def day_counters(developer_id: str, first_day: str, last_day: str) -> list[Counter]:
    """Every day counter of a developer from first_day to last_day inclusive: one paginated Query."""
    return [
        _counter(i)
        for i in dynamodb.query_range(developer_id, *keys.counter_range("day", first_day, last_day))
    ]


def month_counters(developer_id: str, month: str) -> list[Counter]:
    """Every metric's billing-period counter of a developer for one month: one Query."""
    return [
        _counter(i) for i in dynamodb.query_range(developer_id, *keys.counter_range("month", month, month))
    ]


def minute_counter(developer_id: str, minute: str) -> Counter | None:
    """Events recorded for a developer in one minute (rate reporting)."""
    sk = keys.counter_sk("minute", minute, "*")
    items = list(dynamodb.query_range(developer_id, sk, sk))
    return _counter(items[0]) if items else None


def month_counter(developer_id: str, month: str, metric: str) -> Counter | None:
    """One metric's billing-period counter (strongly consistent)."""
    sk = keys.counter_sk("month", month, metric)
    items = list(dynamodb.query_range(developer_id, sk, sk))
    return _counter(items[0]) if items else None
