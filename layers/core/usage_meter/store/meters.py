"""Meter definitions in the accounts table: `METER#<name>` items, listed through the KindIndex."""

from __future__ import annotations

from itertools import islice
from typing import Any

from botocore.exceptions import ClientError

from usage_meter.models.accounts import Meter
from usage_meter.store import accounts, dynamodb, keys
from usage_meter.store.dynamodb import Item, number, text


def _meter_key(name: str) -> Item:
    return {"pk": text(keys.meter_pk(name)), "sk": text(keys.METER_SK)}


def _meter_item(meter: Meter) -> Item:
    item: Item = {
        **_meter_key(meter.name),
        "kind": text("meter"),
        "name": text(meter.name),
        "aggregation": text(meter.aggregation),
        "dimensions": {"L": [text(d) for d in meter.dimensions]},
        "status": text(meter.status),
        "createdAt": text(meter.created_at),
        "revision": dynamodb.new_revision(),
    }
    if meter.shards > 1:
        item["shards"] = number(meter.shards)
    optional = {
        "uniqueBy": meter.unique_by,
        "unit": meter.unit,
        "description": meter.description,
        "archivedAt": meter.archived_at,
    }
    item.update({name: text(value) for name, value in optional.items() if value is not None})
    return item


def _meter(item: dict[str, Any]) -> Meter:
    def optional(name: str) -> str | None:
        value = item.get(name, {}).get("S")
        return str(value) if value is not None else None

    return Meter(
        name=item["name"]["S"],
        aggregation=item["aggregation"]["S"],
        unique_by=optional("uniqueBy"),
        dimensions=[d["S"] for d in item.get("dimensions", {}).get("L", [])],
        unit=optional("unit"),
        description=optional("description"),
        status=item["status"]["S"],
        created_at=item["createdAt"]["S"],
        archived_at=optional("archivedAt"),
        shards=int(item.get("shards", {}).get("N", 1)),
    )


def put_new_meter(meter: Meter) -> bool:
    """Store a meter under a name no meter ever had (a conditional put: of two racing creates,
    one wins); False when the name is taken, archived or not."""
    try:
        dynamodb.accounts_call(
            "put_item", Item=_meter_item(meter), ConditionExpression="attribute_not_exists(pk)"
        )
    except ClientError as exc:
        if dynamodb.is_condition_failure(exc):
            return False
        raise
    return True


def get_meter(name: str) -> Meter | None:
    read = read_meter(name)
    return read[0] if read else None


def read_meter(name: str) -> accounts.Revised[Meter] | None:
    """A meter and its revision, strongly consistent."""
    answer = dynamodb.accounts_call("get_item", Key=_meter_key(name), ConsistentRead=True)
    item = answer.get("Item")
    return (_meter(item), accounts.revision_of(item)) if item else None


def archive_meter(name: str, when: str) -> bool:
    """Mark an active meter archived; False when there is no such meter or it is archived already."""
    try:
        dynamodb.accounts_call(
            "update_item",
            Key=_meter_key(name),
            UpdateExpression="SET #s = :archived, archivedAt = :t, #r = :r",
            ConditionExpression="#s = :active",
            ExpressionAttributeNames={"#s": "status", "#r": accounts.REVISION},
            ExpressionAttributeValues={
                ":r": dynamodb.new_revision(),
                ":archived": text("archived"),
                ":active": text("active"),
                ":t": text(when),
            },
        )
    except ClientError as exc:
        if dynamodb.is_condition_failure(exc):
            return False
        raise
    return True


def list_meters(at_most: int) -> list[Meter]:
    """At most `at_most` meters, in name order (the KindIndex sorts by pk, `METER#<name>`)."""
    return [_meter(item) for item in islice(accounts.by_kind("meter", page_size=at_most), at_most)]
