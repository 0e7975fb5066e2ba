"""What a correction and a page of the event log cost: DynamoDB calls, round trips,
transaction items and capacity units, per aggregation.

Sends requests through the real events handler (routes from template.yaml) and counts every
request its DynamoDB client makes (the same botocore hooks as calls_per_event.py). Each meter
gets EVENTS events on one day first (unmeasured); then one cancel of an event that holds no
figure, one cancel of the event holding the day's figure (for max and latest: what makes the
day be recomputed from the log), one amendment, and one page of 100 of the log are measured.
moto in-process by default; `--endpoint-url URL` runs the same against DynamoDB Local.

    .venv/bin/python bench/corrections_cost.py [--events 200] [--endpoint-url http://127.0.0.1:8000]

Capacity units follow DynamoDB's published rules (bench/dynamodb_cost.py): base-table items
only. EventLogIndex (projection ALL) adds one index write per record written or revised, at
the record's size (about 1 WCU for a record under 1 KB).
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import Any

from calls_per_event import AUTHORIZER, DEVELOPER, Meter, Tally, bench_stack, calls_text, iso

from usage_meter.domain import accounts, meters
from usage_meter.store import dynamodb as store_db
from usage_meter_local.invoke import LocalApi

from report import markdown_table, number

METERS = {
    "api_calls": "sum",
    "logins": "count",
    "peak": "max",
    "gauge": "latest",
    "visitors": "unique_count",
    "seats": "level",
    "calls": "sum",  # with the dimension endpoint
}


def _events(metric: str, count: int, at: Any) -> list[dict[str, Any]]:
    made = []
    for i in range(count):
        event: dict[str, Any] = {
            "developerId": DEVELOPER,
            "metric": metric,
            "quantity": i + 1,
            "idempotencyKey": f"{metric}-{i}",
            "timestamp": iso(at + timedelta(seconds=i)),
        }
        if metric == "visitors":
            event["metadata"] = {"user": f"u{i % 7}"}
        if metric == "calls":
            event["metadata"] = {"endpoint": f"/e{i % 3}"}
        made.append(event)
    return made


def _call(api: LocalApi, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    answer = api.call(method, path, authorizer=AUTHORIZER, **kwargs)
    assert answer.status == 200, answer.body
    body: dict[str, Any] = answer.json()
    return body


def measure(endpoint_url: str | None, events: int) -> list[tuple[str, str, Tally]]:
    rows: list[tuple[str, str, Tally]] = []
    with bench_stack(endpoint_url) as pinned:
        accounts.create_developer("Benchmark", plan="enterprise", developer_id=DEVELOPER)
        for name, aggregation in METERS.items():
            unique_by = "user" if aggregation == "unique_count" else None
            dimensions = ["endpoint"] if name == "calls" else []
            meters.create(
                meters.definition(
                    name=name, aggregation=aggregation, unique_by=unique_by, dimensions=dimensions
                )
            )
        api = LocalApi(timeout_s=900)  # moto is slow: no deadline decides anything here
        meter = Meter(store_db.client(), ask_capacity=endpoint_url is not None)
        at = pinned - timedelta(hours=6)
        for metric in METERS:
            sent = _events(metric, events, at)
            for start in range(0, len(sent), 50):
                _call(api, "POST", "/v1/usage/events", body={"events": sent[start : start + 50]})
            last = events - 1  # the largest and the latest: it holds the max and latest figures
            steps = [
                ("cancel", {"idempotencyKey": f"{metric}-0"}, "cancel (holds no figure)"),
                ("cancel", {"idempotencyKey": f"{metric}-{last}"}, "cancel (holds the day's figure)"),
                ("amend", {"idempotencyKey": f"{metric}-1", **_change(metric)}, "amend"),
            ]
            for action, body, label in steps:
                with meter.measuring() as tally:
                    answer = _call(
                        api,
                        "POST",
                        f"/v1/usage/events/{action}",
                        body={"developerId": DEVELOPER, "reason": "bench", **body},
                    )
                assert answer["status"] in ("cancelled", "amended"), answer
                rows.append((METERS[metric] + (" + dimension" if metric == "calls" else ""), label, tally))
        with meter.measuring() as tally:
            page = _call(api, "GET", "/v1/usage/events", query={"developerId": DEVELOPER, "limit": "100"})
        assert len(page["events"]) == 100
        rows.append(("any", "list: one page of 100", tally))
    return rows


def _change(metric: str) -> dict[str, Any]:
    if metric == "visitors":
        return {"metadata": {"user": "someone-new"}}
    if metric == "logins":
        return {"metadata": {"note": "amended"}}
    if metric == "calls":
        return {"quantity": 50, "metadata": {"endpoint": "/moved"}}
    return {"quantity": 50}


def render(rows: list[tuple[str, str, Tally]], events: int) -> str:
    header = ["aggregation", "request", "calls", "round trips", "transaction items", "WCU", "RCU"]
    table = [
        [
            aggregation,
            label,
            calls_text(t.calls),
            str(t.round_trips),
            str(t.transact_items),
            number(t.wcu),
            number(t.rcu),
        ]
        for aggregation, label, t in rows
    ]
    return f"{events} events per meter on one day\n\n" + markdown_table(header, table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200, help="events per meter on the day (default 200)")
    parser.add_argument("--endpoint-url", help="a DynamoDB endpoint (e.g. DynamoDB Local) instead of moto")
    args = parser.parse_args(argv)
    print(render(measure(args.endpoint_url, args.events), args.events))
    return 0


if __name__ == "__main__":
    sys.exit(main())
