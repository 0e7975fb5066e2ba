"""Meter definitions in the accounts table: `METER#<name>` items, listed through the KindIndex."""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from usage_meter.models.accounts import Meter
from usage_meter.settings import settings
from usage_meter.store import accounts, dynamodb, keys
from usage_meter.store.dynamodb import Item, number, text

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef


def _meter_key(name: str) -> Item:
    return {"pk": text(keys.meter_pk(name)), "sk": text(keys.METER_SK)}


def _meter_item(meter: Meter, revision: AttributeValueTypeDef) -> Item:
    item: Item = {
        **_meter_key(meter.name),
        "kind": text("meter"),
        "name": text(meter.name),
        "aggregation": text(meter.aggregation),
        "dimensions": {"L": [text(d) for d in meter.dimensions]},
        "status": text(meter.status),
        "createdAt": text(meter.created_at),
        accounts.REVISION: revision,
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


def _with_stamps(name: str, item: TransactWriteItemTypeDef, revision: AttributeValueTypeDef) -> bool:
    """Write the meter item and its revision stamps in one transaction; False when the item's
    condition failed (nothing is written)."""
    try:
        dynamodb.client_call(
            "transact_write_items", TransactItems=[item, *accounts.stamp_puts(keys.meter_pk(name), revision)]
        )
    except ClientError as exc:
        reasons = exc.response.get("CancellationReasons", [])
        if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
            return False
        raise
    return True


def put_new_meter(meter: Meter) -> bool:
    """Store a meter under a name no meter ever had (a conditional put: of two racing creates,
    one wins), with its revision stamps; False when the name is taken, archived or not."""
    revision = dynamodb.new_revision(stamped=True)
    put: TransactWriteItemTypeDef = {
        "Put": {
            "TableName": settings().accounts_table,
            "Item": _meter_item(meter, revision),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }
    return _with_stamps(meter.name, put, revision)


def get_meter(name: str) -> Meter | None:
    read = read_meter(name)
    return read[0] if read else None


def read_meter(name: str) -> accounts.Revised[Meter] | None:
    """A meter and its revision, strongly consistent."""
    answer = dynamodb.accounts_call("get_item", Key=_meter_key(name), ConsistentRead=True)
    item = answer.get("Item")
    return (_meter(item), accounts.revision_of(item)) if item else None


def archive_meter(name: str, when: str) -> bool:
    """Mark an active meter archived, with its new revision stamps; False when there is no such
    meter or it is archived already."""
    revision = dynamodb.new_revision(stamped=True)
    update: TransactWriteItemTypeDef = {
        "Update": {
            "TableName": settings().accounts_table,
            "Key": _meter_key(name),
            "UpdateExpression": "SET #s = :archived, archivedAt = :t, #r = :r",
            "ConditionExpression": "#s = :active",
            "ExpressionAttributeNames": {"#s": "status", "#r": accounts.REVISION},
            "ExpressionAttributeValues": {
                ":r": revision,
                ":archived": text("archived"),
                ":active": text("active"),
                ":t": text(when),
            },
        }
    }
    return _with_stamps(name, update, revision)


def list_meters(at_most: int) -> list[Meter]:
    """At most `at_most` meters, in name order (the KindIndex sorts by pk, `METER#<name>`)."""
    return [_meter(item) for item in islice(accounts.by_kind("meter", page_size=at_most), at_most)]
