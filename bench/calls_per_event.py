"""DynamoDB calls, transaction items, round trips and capacity units per tracked event.

Sends requests through the real track handler (routes from template.yaml) and counts every
request its DynamoDB client makes, with botocore event hooks on `usage_meter.store.dynamodb.client()`:
calls by operation (before-parameter-build), transaction items, and round trips, i.e. HTTP
requests including botocore's retries (before-send).

The events are sent as the provider's backend sends them (a service key's authorizer
context, each event naming `dev_bench`: only service keys track). The developer is created
first on a (`--plan`, default pro) with the default plans stored, as the admin CLI leaves a stack.
By default it runs in-process against moto; `--endpoint-url URL` runs the same against a
DynamoDB endpoint such as DynamoDB Local (tables with unique names, dropped at the end) and
also prints the ConsumedCapacity that the endpoint reports.

Capacity units are computed from the requests and responses, because moto does not model
capacity, with DynamoDB's published rules (bench/dynamodb_cost.py, which vs_naive.py uses
too). A cancelled transaction is counted at the full price of its items: an upper bound,
since DynamoDB does not report what a cancelled transaction consumed.

The service's clock is pinned to 12:00 UTC on the 15th of the current month, so the two
days of the multi-day batch fall in one billing period and every run gives the same table.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import boto3
from moto import mock_aws

from usage_meter.domain import accounts, clock, meters
from usage_meter.store import dynamodb as store_db
from usage_meter_local.invoke import LocalApi
from usage_meter_local.template import create_tables, function_environment, table_logical_ids

from dynamodb_cost import request_write_units, response_read_units, written_item_sizes
from report import markdown_table, number

DEVELOPER = "dev_bench"
AUTHORIZER = {"developerId": "dev_provider", "role": "service"}
TRACK_PATH = "/v1/usage/events"
BATCH_SIZE = 100
# ---- the meter: botocore hooks on the service's client -------------------------------------


@dataclass
class Tally:
    """What one scenario cost."""

    calls: Counter[str] = field(default_factory=Counter)
    transact_items: int = 0
    round_trips: int = 0
    cancelled: int = 0
    wcu: float = 0.0
    rcu: float = 0.0
    largest_item: int = 0
    reported: float | None = None  # ConsumedCapacity, when the endpoint returns it


class Meter:
    """Counts the DynamoDB requests of one client; `ask_capacity` adds ReturnConsumedCapacity."""

    def __init__(self, client: Any, *, ask_capacity: bool) -> None:
        self.tally = Tally()
        self.ask_capacity = ask_capacity
        events = client.meta.events
        events.register("before-parameter-build.dynamodb", self._before_call)
        events.register("before-send.dynamodb", self._before_send)
        events.register("after-call.dynamodb", self._after_call)

    @contextmanager
    def measuring(self) -> Iterator[Tally]:
        """Count into a fresh tally; requests outside any `measuring` go to a discarded one."""
        self.tally = Tally()
        try:
            yield self.tally
        finally:
            self.tally = Tally()

    def _before_call(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        tally = self.tally
        tally.calls[model.name] += 1
        if self.ask_capacity and "ReturnConsumedCapacity" in model.input_shape.members:
            params.setdefault("ReturnConsumedCapacity", "TOTAL")
        sizes, transactional = written_item_sizes(model.name, params)
        if transactional:
            tally.transact_items += len(params["TransactItems"])
        tally.largest_item = max([tally.largest_item, *sizes])
        write = request_write_units(model.name, params)
        batched = params.get("RequestItems", {}).values() if model.name == "BatchGetItem" else []
        consistent = bool(params.get("ConsistentRead")) or any(t.get("ConsistentRead") for t in batched)
        context["bench"] = {"wcu": write, "consistent": consistent}

    def _before_send(self, **_: Any) -> None:
        self.tally.round_trips += 1

    def _after_call(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        tally = self.tally
        sent = context.get("bench", {"wcu": 0.0, "consistent": False})
        tally.wcu += sent["wcu"]
        if parsed.get("Error", {}).get("Code") == "TransactionCanceledException":
            tally.cancelled += 1
        tally.rcu += response_read_units(model.name, parsed, consistent=sent["consistent"])
        consumed = parsed.get("ConsumedCapacity")
        if consumed:
            entries = consumed if isinstance(consumed, list) else [consumed]
            tally.reported = (tally.reported or 0.0) + sum(e.get("CapacityUnits", 0.0) for e in entries)


# ---- scenarios -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One track request to measure; `setup` is sent first, unmeasured (the original of a duplicate)."""

    name: str
    body: dict[str, Any]
    expect: str
    setup: dict[str, Any] | None = None
    then: Callable[[], None] | None = None  # run after the setup, unmeasured

    @property
    def events(self) -> int:
        return len(self.body.get("events", [self.body]))


@dataclass
class Row:
    scenario: str
    events: int
    tally: Tally


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_key() -> str:
    return f"bench-{uuid.uuid4()}"


def event(metric: str = "api_calls", *, keyed: bool = True, at: datetime | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"developerId": DEVELOPER, "metric": metric, "quantity": 1}
    if keyed:
        body["idempotencyKey"] = new_key()
    if at is not None:
        body["timestamp"] = iso(at)
    return body


def batch(metrics: list[str], days: list[datetime | None], *, keyed: bool = True) -> dict[str, Any]:
    """100 events cycling through the metrics, then the days."""
    return {
        "events": [
            event(metrics[i % len(metrics)], keyed=keyed, at=days[(i // len(metrics)) % len(days)])
            for i in range(BATCH_SIZE)
        ]
    }


METERS = {"logins": "count", "peak": "max", "gauge": "latest", "agents": "level", "visitors": "unique_count"}
"""The meters of the aggregation scenarios (sum is the plain api_calls of the others)."""


def metered(metric: str, quantity: int = 1, **extra: Any) -> dict[str, Any]:
    """A keyed single event of one of METERS."""
    return {
        "developerId": DEVELOPER,
        "metric": metric,
        "quantity": quantity,
        "idempotencyKey": new_key(),
        **extra,
    }


def aggregation_scenarios(now: datetime) -> list[Scenario]:
    """One single event per aggregation, where it costs least and where it costs most."""
    earlier, later = iso(now - timedelta(minutes=30)), iso(now - timedelta(minutes=10))
    seen = {"metadata": {"user": "ann"}}
    return [
        Scenario("count meter", metered("logins"), "recorded"),
        Scenario("max meter: a new peak", metered("peak", 9), "recorded", setup=metered("peak", 5)),
        Scenario("max meter: below the peak", metered("peak", 3), "recorded", setup=metered("peak", 5)),
        Scenario(
            "latest meter: a later value",
            metered("gauge", 4, timestamp=later),
            "recorded",
            setup=metered("gauge", 2, timestamp=earlier),
        ),
        Scenario(
            "latest meter: an earlier value",
            metered("gauge", 4, timestamp=earlier),
            "recorded",
            setup=metered("gauge", 2, timestamp=later),
        ),
        Scenario("level meter: +1", metered("agents", 1), "recorded", setup=metered("agents", 2)),
        Scenario("level meter: -1", metered("agents", -1), "recorded", setup=metered("agents", 2)),
        Scenario("unique_count: a new value", metered("visitors", metadata={"user": new_key()}), "recorded"),
        Scenario(
            "unique_count: a value seen",
            metered("visitors", **seen),
            "recorded",
            setup=metered("visitors", **seen),
        ),
    ]


DIMENSIONED = {
    "calls_1d": ["endpoint"],
    "calls_2d": ["endpoint", "model"],
    "calls_3d": ["endpoint", "model", "region"],
}
"""Count meters with 1, 2 and 3 dimensions (values of realistic length: 20-30 characters)."""
VALUES = {"endpoint": "/v1/documents/verify", "model": "glyph-large-2026-11", "region": "eu-central-1"}


def dimension_scenarios() -> list[Scenario]:
    """A single event of a meter with 1, 2 and 3 dimensions: its combination already counted
    today, and a new one (its first writer claims a place under the day's bound)."""
    found: list[Scenario] = []
    for metric, names in DIMENSIONED.items():
        seen = {"metadata": {n: VALUES[n] for n in names}}
        found.append(
            Scenario(
                f"{len(names)} dimension(s): a combination seen today",
                metered(metric, **seen),
                "recorded",
                setup=metered(metric, **seen),
            )
        )
        fresh = {"metadata": {n: f"{VALUES[n][:-6]}{uuid.uuid4().hex[:6]}" for n in names}}
        found.append(
            Scenario(f"{len(names)} dimension(s): a new combination", metered(metric, **fresh), "recorded")
        )
    return found


def scenarios(now: datetime) -> list[Scenario]:
    one_day: list[datetime | None] = [None]
    two_days: list[datetime | None] = [now - timedelta(hours=1), now - timedelta(days=1, hours=1)]
    original = event()
    return [
        Scenario("single event, keyed, cold container", event(), "recorded"),
        Scenario("single event, keyed, warm container", event(), "recorded", setup=event()),
        Scenario(
            "single event, keyed, plan changed since copied",
            event(),
            "recorded",
            setup=event(),
            then=lambda: accounts.put_plan(next(p for p in accounts.plans() if p.name == "pro")),
        ),
        Scenario("batch: 1 metric x 1 day, keyed", batch(["api_calls"], one_day), "recorded"),
        Scenario(
            "batch: 3 metrics x 2 days, keyed",
            batch(["api_calls", "tokens", "storage_gb"], two_days),
            "recorded",
        ),
        Scenario("duplicate single event (key re-sent)", original, "duplicate", setup=original),
        Scenario("single event, no key", event(keyed=False), "recorded"),
        Scenario("batch: 1 metric x 1 day, no keys", batch(["api_calls"], one_day, keyed=False), "recorded"),
        *aggregation_scenarios(now),
        *dimension_scenarios(),
    ]


def track(api: LocalApi, body: dict[str, Any], expect: str) -> None:
    """POST one request; fail loudly unless every event got the expected status."""
    answer = api.call("POST", TRACK_PATH, body=body, authorizer=AUTHORIZER)
    if answer.status != 200:
        raise SystemExit(f"track answered {answer.status}: {answer.body}")
    statuses = {r["status"] for r in answer.json()["results"]}
    if statuses != {expect}:
        raise SystemExit(f"expected every event {expect!r}, got {sorted(statuses)}: {answer.body[:500]}")


def run_scenarios(meter: Meter, now: datetime) -> list[Row]:
    # a long invocation time: moto's transactions can take seconds, and the track function's
    # deadline would then answer temporarily_unavailable; what is counted here is the work
    api = LocalApi(timeout_s=900)
    rows = []
    for scenario in scenarios(now):
        if scenario.setup is not None:
            track(api, scenario.setup, "recorded")
        if scenario.then is not None:
            scenario.then()
        with meter.measuring() as tally:
            track(api, scenario.body, scenario.expect)
        rows.append(Row(scenario.name, scenario.events, tally))
    return rows


# ---- environments ----------------------------------------------------------------------------


def configure_environment(names: dict[str, str], endpoint_url: str | None) -> None:
    """The track function's environment from template.yaml, quiet logs, fake credentials."""
    track_route = LocalApi().route("POST", TRACK_PATH)
    assert track_route is not None, "template.yaml routes no POST /v1/usage/events"
    os.environ.update(function_environment(track_route.function, names))
    os.environ.update(
        {
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
            "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        }
    )
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(variable, "testing")
    if endpoint_url:
        os.environ["DYNAMODB_ENDPOINT_URL"] = endpoint_url
    else:
        os.environ.pop("DYNAMODB_ENDPOINT_URL", None)
    warnings.filterwarnings("ignore", message="No application metrics to publish")


@contextmanager
def bench_stack(endpoint_url: str | None = None) -> Iterator[datetime]:
    """The tables (moto, or unique names at the endpoint, dropped at the end) with the default
    plans stored, the service's clock pinned (yielded); cleaned up after."""
    prefix = "bench" if endpoint_url is None else f"bench-{uuid.uuid4().hex[:8]}"
    names = {logical_id: f"{prefix}-{logical_id}" for logical_id in table_logical_ids()}
    configure_environment(names, endpoint_url)
    real_now = datetime.now(UTC)
    pinned = real_now.replace(day=15, hour=12, minute=0, second=0, microsecond=0)
    with ExitStack() as stack:
        if endpoint_url is None:
            stack.enter_context(mock_aws())
        stack.enter_context(mock.patch.object(clock, "now", return_value=pinned))
        store_db.reset()
        admin = boto3.client("dynamodb", endpoint_url=endpoint_url)
        create_tables(admin, names)
        if endpoint_url is not None:
            for table in names.values():
                stack.callback(admin.delete_table, TableName=table)
        accounts.seed_default_plans()
        yield pinned
    store_db.reset()


def measure(endpoint_url: str | None, plan: str) -> list[Row]:
    """Create the tables and the developer on `plan`, run every scenario, clean up."""
    with bench_stack(endpoint_url) as pinned:
        accounts.create_developer("Benchmark", plan=plan, developer_id=DEVELOPER)
        for name, aggregation in METERS.items():
            meters.create(
                meters.definition(
                    name=name,
                    aggregation=aggregation,
                    unique_by=None if aggregation != "unique_count" else "user",
                )
            )
        for name, names in DIMENSIONED.items():
            meters.create(meters.definition(name=name, aggregation="count", dimensions=names))
        meter = Meter(store_db.client(), ask_capacity=endpoint_url is not None)
        return run_scenarios(meter, pinned)


# ---- output -----------------------------------------------------------------------------------


def calls_text(calls: Counter[str]) -> str:
    return " + ".join(f"{n} {op}" for op, n in calls.items())  # in order of first use


def render(rows: list[Row], *, reported: bool) -> str:
    header = [
        "scenario",
        "events",
        "DynamoDB calls",
        "tx items",
        "round trips",
        "WCU",
        "RCU",
        "calls/event",
        "tx items/event",
        "WCU/event",
        "largest item (B)",
    ]
    if reported:
        header.append("reported CU")
    body: list[list[str]] = []
    for row in rows:
        t = row.tally
        calls = sum(t.calls.values())
        wcu = number(t.wcu) + ("*" if t.cancelled else "")
        line = [
            row.scenario,
            str(row.events),
            calls_text(t.calls),
            str(t.transact_items),
            str(t.round_trips),
            wcu,
            number(t.rcu),
            number(calls / row.events),
            number(t.transact_items / row.events),
            number(t.wcu / row.events),
            str(t.largest_item),
        ]
        if reported:
            line.append("-" if t.reported is None else number(t.reported))
        body.append(line)
    return markdown_table(header, body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--endpoint-url",
        help="a DynamoDB endpoint (e.g. DynamoDB Local at http://127.0.0.1:8000) instead of moto",
    )
    parser.add_argument(
        "--plan",
        default="pro",
        help="the benchmark developer's plan (default pro: a hard limit on api_calls, room for every scenario)",
    )
    args = parser.parse_args(argv)
    rows = measure(args.endpoint_url, args.plan)
    target = args.endpoint_url or "moto (in-process)"
    print(
        f"DynamoDB cost per tracked event, against {target}, developer on plan {args.plan!r}; "
        "capacity units computed from request sizes"
    )
    print(render(rows, reported=args.endpoint_url is not None))
    print(
        "* includes a cancelled transaction, counted at the full price of its items (an upper bound).\n"
        "WCU: transactional writes, 2 per item per started KB; RCU: strongly consistent reads, "
        "1 per started 4 KB."
    )
    if args.endpoint_url:
        print(
            "reported CU: the sum of the ConsumedCapacity the endpoint returned ('-': none returned). "
            "DynamoDB Local reports a flat 2 per table a transaction touches, whatever its items, "
            "and nothing for a cancelled one: it does not model billing."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
