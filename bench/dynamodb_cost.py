"""DynamoDB item sizes and capacity units, worked out from requests and responses.

Neither moto nor DynamoDB Local models what DynamoDB bills (moto reports no capacity;
DynamoDB Local reports a flat figure per table a transaction touches), so the benchmarks
compute capacity units themselves, with DynamoDB's published rules. calls_per_event.py and
vs_naive.py both use these functions, so that their figures agree.

- item size = sum over attributes of (UTF-8 bytes of the name + size of the value): strings
  UTF-8 bytes, numbers 1 byte per 2 significant digits + 1, binary raw bytes, null and
  boolean 1, lists and maps 3 + 1 per element + their elements (map keys count as names);
- a write costs 1 WCU per started KB of the item, 2 in a transaction; a Put is sized by the
  item it writes; an Update by the item after it, taken to be the key plus every attribute
  the update expression names with the request's value (for ADD, the increment's digits,
  not the sum's: a few bytes low);
- a read costs 1 RCU per started 4 KB of the items returned (summed for a Query), at least
  1, half for an eventually consistent read, twice in a transaction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

KB = 1024
READ_UNIT_BYTES = 4 * KB

# "ADD #c :q" and "SET #d = :d": an attribute (name or #placeholder) and its :value.
_ASSIGNMENT = re.compile(r"(#?[A-Za-z_][\w.]*)\s*=?\s*(:\w+)")


def number_size(text: str) -> int:
    """Bytes of a number: 1 per two significant digits (leading/trailing zeros trimmed) + 1."""
    mantissa = text.lstrip("+-").lower().split("e", 1)[0]
    digits = mantissa.replace(".", "").strip("0")
    return math.ceil(max(len(digits), 1) / 2) + 1


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one attribute value (without its name)."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        return number_size(str(inner))
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return sum(number_size(n) for n in inner)
    if kind == "BS":
        return sum(len(b) for b in inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in inner)
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """Bytes of an item: attribute names plus values."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def updated_item(update: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The item an Update leaves, approximated as the key plus every attribute it assigns."""
    names: Mapping[str, str] = update.get("ExpressionAttributeNames", {})
    values: Mapping[str, Mapping[str, Any]] = update.get("ExpressionAttributeValues", {})
    item: dict[str, Mapping[str, Any]] = dict(update["Key"])
    for target, placeholder in _ASSIGNMENT.findall(update.get("UpdateExpression", "")):
        if placeholder in values:
            item[names.get(target, target)] = values[placeholder]
    return item


def write_units(size: int, *, transactional: bool) -> int:
    return max(1, math.ceil(size / KB)) * (2 if transactional else 1)


def read_units(size: int, *, consistent: bool, transactional: bool = False) -> float:
    units = float(max(1, math.ceil(size / READ_UNIT_BYTES)))
    if not consistent:
        units /= 2
    return units * (2 if transactional else 1)


def transact_item_size(action: str, body: Mapping[str, Any]) -> int:
    if action == "Put":
        return item_size(body["Item"])
    if action == "Update":
        return item_size(updated_item(body))
    return item_size(body["Key"])  # Delete, ConditionCheck: at least the key (and 1 KB anyway)


# ---- whole requests and responses ------------------------------------------------------------


def written_item_sizes(operation: str, params: Mapping[str, Any]) -> tuple[list[int], bool]:
    """The sizes of the items one request writes, and whether it writes them in a transaction."""
    if operation == "TransactWriteItems":
        sizes = [
            transact_item_size(action, body)
            for entry in params["TransactItems"]
            for action, body in entry.items()
        ]
        return sizes, True
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        return [transact_item_size(operation.removesuffix("Item"), params)], False
    return [], False


def request_write_units(operation: str, params: Mapping[str, Any]) -> float:
    """Write units of one request (API operation name and its parameters): 0 for a read."""
    sizes, transactional = written_item_sizes(operation, params)
    return float(sum(write_units(size, transactional=transactional) for size in sizes))


def response_read_units(operation: str, parsed: Mapping[str, Any], *, consistent: bool) -> float:
    """Read units of one answered request, from the items it returned: 0 for a write."""
    if operation in ("Query", "Scan"):
        size = sum(item_size(i) for i in parsed.get("Items", []))
        return read_units(size, consistent=consistent)
    if operation == "GetItem":
        return read_units(item_size(parsed.get("Item", {})), consistent=consistent)
    if operation == "BatchGetItem":  # each item is rounded up on its own
        return sum(
            read_units(item_size(item), consistent=consistent)
            for items in parsed.get("Responses", {}).values()
            for item in items
        )
    if operation == "TransactGetItems":
        return sum(
            read_units(item_size(r.get("Item", {})), consistent=True, transactional=True)
            for r in parsed.get("Responses", [])
        )
    return 0.0
