"""DynamoDB Queries per grouped read: a month of one dimensioned meter, grouped by one dimension.

For each size (combinations a day), a developer's meter gets that many combinations on every
day of a 30-day month, written as the track pipeline writes them (store/groups.py's Update,
run as it is), then `GET /v1/usage?metric=&groupBy=endpoint&startDate=&endDate=` (the month)
and `GET /v1/usage/history?granularity=month&groupBy=endpoint` are served by the real
handlers while the service's DynamoDB client counts its calls (the Meter of
calls_per_event.py). "extra Queries" is what the same read costs beyond its ungrouped twin:
the pages of the one range Query over the meter's combination counters (1 MB a page).
Runs in-process against moto.
"""

from __future__ import annotations

import re
import sys
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from calls_per_event import AUTHORIZER, Meter, bench_stack

from usage_meter.domain import accounts, meters
from usage_meter.models.records import GroupIncrement
from usage_meter.settings import settings
from usage_meter.store import dynamodb as store_db
from usage_meter.store import groups
from usage_meter_local.invoke import LocalApi

from report import markdown_table

SIZES = (10, 100, 1000)
METRIC = "calls"
FIRST = date(2026, 11, 1)
DAYS = 30


def as_put(update: dict[str, Any]) -> dict[str, Any]:
    """The item a first write of store/groups.py's Update leaves: each `#name :value` it ADDs
    or SETs, by name (a batch of Puts fills a month in seconds, where moto takes minutes for
    as many single updates)."""
    names, values = update["ExpressionAttributeNames"], update["ExpressionAttributeValues"]
    pairs = re.findall(r"(#\w+) (?:= )?(:\w+)", update["UpdateExpression"])
    return {**update["Key"], **{names[name]: values[value] for name, value in pairs}}


def fill(developer_id: str, size: int) -> None:
    """`size` combinations on each day of the month, one event each (endpoint e<i>, model m<i % 4>)."""
    client = store_db.client()
    table = settings().usage_table
    puts = []
    for offset in range(DAYS):
        day = (FIRST + timedelta(days=offset)).isoformat()
        for i in range(size):
            change = GroupIncrement(
                developer_id=developer_id,
                metric=METRIC,
                day=day,
                values={"endpoint": f"/v1/endpoint/{i:04d}", "model": f"model-{i % 4}"},
                digest=f"{i:032d}",
                quantity=Decimal(1),
                events=1,
                aggregation="count",
                new=True,
            )
            puts.append(
                {
                    "PutRequest": {
                        "Item": as_put(groups.group_item(change, "2026-11-30T00:00:00.000Z")["Update"])
                    }
                }
            )
    for start in range(0, len(puts), 25):
        client.batch_write_item(RequestItems={table: puts[start : start + 25]})


def main() -> int:
    rows: list[list[str]] = []
    last = FIRST + timedelta(days=DAYS - 1)
    with bench_stack():
        meters.create(meters.definition(name=METRIC, aggregation="count", dimensions=["endpoint", "model"]))
        api = LocalApi(timeout_s=900)
        meter = Meter(store_db.client(), ask_capacity=False)
        for size in SIZES:
            developer_id = f"dev_g{size}"
            accounts.create_developer(developer_id, plan="pro", developer_id=developer_id)
            fill(developer_id, size)
            window = {"developerId": developer_id, "metric": METRIC}
            reads = {
                "GET /v1/usage (the month)": (
                    "/v1/usage",
                    {"startDate": FIRST.isoformat(), "endDate": last.isoformat()},
                ),
                "GET /v1/usage/history (month)": (
                    "/v1/usage/history",
                    {"startDate": FIRST.isoformat(), "endDate": last.isoformat(), "granularity": "month"},
                ),
            }
            for name, (path, query) in reads.items():
                counts = []
                for grouped in (False, True):
                    params = {**window, **query, **({"groupBy": "endpoint"} if grouped else {})}
                    with meter.measuring() as tally:
                        answer = api.call("GET", path, query=params, authorizer=AUTHORIZER)
                    if answer.status != 200:
                        raise SystemExit(f"{path} answered {answer.status}: {answer.body[:300]}")
                    counts.append(tally.calls.get("Query", 0))
                rows.append(
                    [
                        name,
                        str(size),
                        str(size * DAYS),
                        str(counts[0]),
                        str(counts[1]),
                        str(counts[1] - counts[0]),
                    ]
                )
    print(f"DynamoDB Queries per grouped read of one meter over {DAYS} days, grouped by one dimension (moto)")
    print(
        markdown_table(
            [
                "read",
                "combinations a day",
                "combination counters",
                "Queries ungrouped",
                "Queries grouped",
                "extra Queries",
            ],
            rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
