"""Counter items: the ADD of an event's changes (with a hard limit's ceiling) and their reads."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from usage_meter.models.records import LEVEL_KEY, Counter, CounterIncrement, UniqueMarker
from usage_meter.settings import settings
from usage_meter.store import dynamodb, keys
from usage_meter.store.dynamodb import number, text

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef


def increment_item(inc: CounterIncrement, updated_at: str) -> TransactWriteItemTypeDef:
    """The Update of one counter: its events added, its consumption changed as its aggregation
    says (see CounterIncrement), under the condition that keeps it exact."""
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
        ":e": number(inc.events),
        ":d": text(inc.developer_id),
        ":m": text(inc.metric),
        ":k": text(inc.key),
        ":u": text(updated_at),
        ":g": text(inc.aggregation),
    }
    sets = ["#d = :d", "#m = :m", "#k = :k", "#u = :u", "#g = :g"]
    if inc.scope == "day":
        names["#a"] = "activeDay"
        values[":a"] = text(keys.activity_key(inc.key, inc.developer_id))
        sets.append("#a = :a")
    if inc.expires_at is not None:
        names["#x"] = "expiresAt"
        values[":x"] = number(inc.expires_at)
        sets.append("#x = :x")
    adds = ["#e :e"]
    condition = _consumption(inc, names, values, sets, adds)
    update: Any = {
        "TableName": settings().usage_table,
        "Key": {
            "pk": text(keys.developer_pk(inc.developer_id)),
            "sk": text(keys.counter_sk(inc.scope, inc.key, inc.metric, inc.shard)),
        },
        "UpdateExpression": f"ADD {', '.join(adds)} SET {', '.join(sets)}",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }
    if condition is not None:
        update["ConditionExpression"] = condition
        update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    return {"Update": update}


def _consumption(
    inc: CounterIncrement,
    names: dict[str, str],
    values: dict[str, AttributeValueTypeDef],
    sets: list[str],
    adds: list[str],
) -> str | None:
    """How the change moves `consumed`, and the condition that keeps it exact (None: none)."""
    if inc.peak is not None:  # max: only ever raised
        values[":p"] = number(inc.peak)
        sets.append("#c = :p")
        return "attribute_not_exists(#c) OR #c < :p"
    if inc.latest is not None:  # latest: only by a later event
        order_key, value = inc.latest
        names["#l"] = "latestKey"
        values[":lk"] = text(order_key)
        values[":lv"] = number(value)
        sets.extend(["#c = :lv", "#l = :lk"])
        return "attribute_not_exists(#l) OR #l < :lk"
    values[":q"] = number(inc.quantity)
    adds.insert(0, "#c :q")
    if inc.level_was is not None:  # exactly the level a refusal in this transaction was judged by
        values[":was"] = number(inc.level_was)
        return "#c = :was" if inc.level_was else "attribute_not_exists(#c) OR #c = :was"
    if inc.level_range is not None:
        return _level_bounds(inc.level_range, values)
    if inc.ceiling is not None:
        # the limit check and the increment commit together: usage never passes the ceiling
        values[":room"] = number(inc.ceiling - inc.quantity)
        return "attribute_not_exists(#c) OR #c <= :room"
    return None


def _level_bounds(bounds: tuple[Decimal, Decimal | None], values: dict[str, AttributeValueTypeDef]) -> str:
    """The level before the change must be in [low, high] (an absent level is 0)."""
    low, high = bounds
    values[":lo"] = number(low)
    within = "#c >= :lo"
    if high is not None:
        values[":hi"] = number(high)
        within = "#c BETWEEN :lo AND :hi"
    fits_zero = low <= 0 and (high is None or high >= 0)
    return f"attribute_not_exists(#c) OR {within}" if fits_zero else within


def marker_item(marker: UniqueMarker) -> TransactWriteItemTypeDef:
    """The Put of a unique_count value's marker, only if the window has not seen the value."""
    return {
        "Put": {
            "TableName": settings().usage_table,
            "Item": {
                "pk": text(keys.developer_pk(marker.developer_id)),
                "sk": text(keys.marker_sk(marker.scope, marker.window, marker.metric, marker.digest)),
                "developerId": text(marker.developer_id),
                "metric": text(marker.metric),
                "expiresAt": number(marker.expires_at),
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


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
        latest_key=item["latestKey"]["S"] if "latestKey" in item else None,
        corrections=int(item["corrections"]["N"]) if "corrections" in item else 0,
    )


def _counters(items: Iterable[dict[str, Any]]) -> list[Counter]:
    """Counters from their items, a sharded meter's shards added into one counter (only sum and
    count meters are sharded: their shards add up), in the order the items came."""
    merged: dict[tuple[str, str, str], Counter] = {}
    for item in items:
        counter = _counter(item)
        slot = (counter.scope, counter.key, counter.metric)
        found = merged.get(slot)
        if found is None:
            merged[slot] = counter
        else:
            found.consumed += counter.consumed
            found.events += counter.events
            found.corrections += counter.corrections
    return list(merged.values())


def day_counters(developer_id: str, first_day: str, last_day: str) -> list[Counter]:
    """Every day counter of a developer from first_day to last_day inclusive: one paginated Query."""
    return _counters(dynamodb.query_range(developer_id, *keys.counter_range("day", first_day, last_day)))


def month_counters(developer_id: str, month: str) -> list[Counter]:
    """Every metric's billing-period counter of a developer for one month: one Query."""
    return _counters(dynamodb.query_range(developer_id, *keys.counter_range("month", month, month)))


def month_range(developer_id: str, first_month: str, last_month: str) -> list[Counter]:
    """Every metric's billing-period counters from `first_month` to `last_month`: one Query."""
    return _counters(
        dynamodb.query_range(developer_id, *keys.counter_range("month", first_month, last_month))
    )


def distinct_values(developer_id: str, first_day: str, last_day: str) -> dict[str, int]:
    """Each unique_count meter's distinct values over the days from first_day to last_day: the
    digests of its day markers, each counted once however many days saw it (one paginated
    Query, one small item per value and day)."""
    digests: dict[str, set[str]] = {}
    for item in dynamodb.query_range(developer_id, *keys.marker_range("day", first_day, last_day)):
        digests.setdefault(item["metric"]["S"], set()).add(item["sk"]["S"].rsplit("#", 1)[1])
    return {metric: len(values) for metric, values in digests.items()}


def read_counters(developer_id: str, sort_keys: list[str]) -> list[Counter]:
    """The counters of a developer at these sort keys that exist (one BatchGetItem), shards added."""
    pk = text(keys.developer_pk(developer_id))
    return _counters(dynamodb.get_usage_items([{"pk": pk, "sk": text(sk)} for sk in sort_keys]))


def minute_counter(developer_id: str, minute: str) -> Counter | None:
    """Events recorded for a developer in one minute (rate reporting), its shards added (one Query)."""
    found = _counters(dynamodb.query_range(developer_id, *keys.shard_range("minute", minute, "*")))
    return found[0] if found else None


def month_counter(developer_id: str, month: str, metric: str) -> Counter | None:
    """One metric's billing-period counter, its shards added (strongly consistent)."""
    found = _counters(dynamodb.query_range(developer_id, *keys.shard_range("month", month, metric)))
    return found[0] if found else None


def levels(developer_id: str) -> list[Counter]:
    """Every level meter's running level of a developer (one Query)."""
    return [
        _counter(i)
        for i in dynamodb.query_range(developer_id, *keys.counter_range("level", LEVEL_KEY, LEVEL_KEY))
    ]


def level(developer_id: str, metric: str) -> Counter | None:
    """One level meter's running level (strongly consistent)."""
    sk = keys.counter_sk("level", LEVEL_KEY, metric)
    items = list(dynamodb.query_range(developer_id, sk, sk))
    return _counter(items[0]) if items else None
