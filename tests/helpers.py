"""Shared test helpers: identities, clock control, table inspection and a shell without AWS."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

DEV_A = {"developerId": "dev_alice", "role": "developer"}
DEV_B = {"developerId": "dev_bob", "role": "developer"}
SERVICE = {"developerId": "dev_provider", "role": "service"}
MADE_KEY = re.compile(r"um_evt_[0-9a-f]{32}")  # the key the service gives an event sent without one


def naming(developer_id: str, body: Any) -> Any:
    """A track body as the provider's backend sends it for one developer (only service keys
    track): every event that names no developer names `developer_id`. In a body sent as text
    (exact numbers as written), every object opening with "metric" gets it put first."""
    if isinstance(body, str):
        if '"developerId"' in body:
            return body
        return body.replace('{"metric"', f'{{"developerId": "{developer_id}", "metric"')
    if isinstance(body, dict):
        if isinstance(body.get("events"), list):
            return {**body, "events": [naming(developer_id, event) for event in body["events"]]}
        if "metric" in body and "developerId" not in body:
            return {"developerId": developer_id, **body}
    return body


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
    """Counter items (day, month, a level's running level) as {(pk, sk): (consumed, events)},
    a sharded meter's shards (`<counter sk>#<n>`) added under their counter's sk; minute
    counters, the metric catalog, unique_count markers, dimension groups, refusal flags, alert
    claims and webhook delivery records apart."""
    found: dict[tuple[str, str], tuple[Decimal, int]] = {}
    for i in items:
        sk = i["sk"]["S"]
        if sk.startswith(("R#", "METRIC", "U#", "G#", "C#", "X#", "A#", "E#", "T#")):
            continue
        base, _, last = sk.rpartition("#")
        slot = (i["pk"]["S"], base if last.isdigit() else sk)  # metric names start with a letter
        consumed, events = found.get(slot, (Decimal(0), 0))
        found[slot] = (consumed + Decimal(i["consumed"]["N"]), events + int(i["events"]["N"]))
    return found


def groups_in(
    items: list[dict[str, Any]],
) -> dict[tuple[str, str, str, tuple[tuple[str, str], ...]], Decimal]:
    """Dimension group counters as {(pk, metric, day, sorted values): consumed}."""
    return {
        (
            i["pk"]["S"],
            i["metric"]["S"],
            i["day"]["S"],
            tuple(sorted((k, v["S"]) for k, v in i["dimensions"]["M"].items())),
        ): Decimal(i["consumed"]["N"])
        for i in items
        if i["sk"]["S"].startswith("G#")
    }


def catalogs_in(items: list[dict[str, Any]]) -> dict[str, tuple[set[str], int]]:
    """Each developer's metric catalog as {developerId: (its metrics, its size item)}."""
    found: dict[str, tuple[set[str], int]] = {}
    for i in items:
        sk = i["sk"]["S"]
        if not sk.startswith("METRIC"):
            continue
        metrics, size = found.get(i["developerId"]["S"], (set(), 0))
        if sk == "METRICS":
            size = int(i["metrics"]["N"])
        else:
            metrics.add(i["metric"]["S"])
        found[i["developerId"]["S"]] = (metrics, size)
    return found


def minute_counters_in(items: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """Minute counters (events recorded per developer and minute) as {(pk, sk): events}, the
    shards of one (`<sk>#<n>`, without a stated rate) added under its sk."""
    found: dict[tuple[str, str], int] = {}
    for i in items:
        sk = i["sk"]["S"]
        if sk.startswith("R#"):
            base, _, last = sk.rpartition("#")
            slot = (i["pk"]["S"], base if last.isdigit() else sk)
            found[slot] = found.get(slot, 0) + int(i["events"]["N"])
    return found


def counters(dynamodb: Any, table: str) -> dict[tuple[str, str], tuple[Decimal, int]]:
    """The table's day and month counters, read now (see counters_in)."""
    return counters_in(table_items(dynamodb, table))


def minute_counters(dynamodb: Any, table: str) -> dict[tuple[str, str], int]:
    """The table's minute counters, read now (see minute_counters_in)."""
    return minute_counters_in(table_items(dynamodb, table))


def shell_without_aws(folder: Path) -> dict[str, str]:
    """This process's environment as a shell with no AWS set up: no region, no credentials, no
    table names, no ~/.aws (files in `folder` that do not exist), no instance metadata lookups."""
    tables = ("USAGE_TABLE", "IDEMPOTENCY_TABLE", "ACCOUNTS_TABLE", "DYNAMODB_ENDPOINT_URL")
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and name not in tables
    }
    env.update(
        AWS_CONFIG_FILE=str(folder / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(folder / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def summed(entry: dict[str, Any], events: int, average: Any = None) -> dict[str, Any]:
    """A sum metric's entry of GET /v1/usage: `entry`'s figures plus the aggregation, the events
    counted in the window and their average (None without events)."""
    return {**entry, "aggregation": "sum", "events": events, "average": average}
