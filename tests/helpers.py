"""Shared test helpers: identities, clock control and table inspection."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

DEV_A = {"developerId": "dev_alice", "role": "developer"}
DEV_B = {"developerId": "dev_bob", "role": "developer"}
SERVICE = {"developerId": "dev_provider", "role": "service"}
MADE_KEY = re.compile(r"um_evt_[0-9a-f]{32}")  # the key the service gives an event sent without one


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def table_items(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    """Every item of a table (tests only: the service itself never scans)."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def counters_in(items: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[Decimal, int]]:
    """Day and month counter items as {(pk, sk): (consumed, events)} (minute counters apart)."""
    return {
        (i["pk"]["S"], i["sk"]["S"]): (Decimal(i["consumed"]["N"]), int(i["events"]["N"]))
        for i in items
        if not i["sk"]["S"].startswith("R#")
    }


def minute_counters_in(items: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """Minute counters (events recorded per developer and minute) as {(pk, sk): events}."""
    return {
        (i["pk"]["S"], i["sk"]["S"]): int(i["events"]["N"]) for i in items if i["sk"]["S"].startswith("R#")
    }


def counters(dynamodb: Any, table: str) -> dict[tuple[str, str], tuple[Decimal, int]]:
    """The table's day and month counters, read now (see counters_in)."""
    return counters_in(table_items(dynamodb, table))


def minute_counters(dynamodb: Any, table: str) -> dict[tuple[str, str], int]:
    """The table's minute counters, read now (see minute_counters_in)."""
    return minute_counters_in(table_items(dynamodb, table))
