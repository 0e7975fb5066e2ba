"""Dimensions under real concurrency on DynamoDB Local: 16 clients, each through its own
Lambda-like container, send 600 keyed events (DIMENSIONS_ENGINE_EVENTS) of a sum meter with dimensions endpoint and
model (3 endpoints x 4 models, some events without a model), a tenth of them resent with the
same keys, in single events and batches. Every combination's counter equals a reference
computed from the accepted events, the day's count of combinations is exactly the number of
distinct combinations (their first writers raced), and the groups of every grouped read add
up exactly to the ungrouped total.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from usage_meter.domain import meters
from usage_meter.settings import settings

from engine.conftest import EngineStack
from engine.support import Container, all_crashes, batched_requests, drain, run_threads, track
from helpers import SERVICE, counters, groups_in, iso, naming, table_items

pytestmark = pytest.mark.engine

Report = Callable[[str], None]
MAX_ATTEMPTS = 20

CLIENTS = 16
EVENTS = int(os.environ.get("DIMENSIONS_ENGINE_EVENTS", "600"))
DEVELOPER = "dev_dims"
ENDPOINTS = ("/v1/verify", "/v1/sign", "/v1/keys")
MODELS = ("small", "large", "vision", None)  # None: the event carries no model ("")


def sent_events(rng: random.Random, now: datetime) -> list[dict[str, Any]]:
    """Keyed events over every combination, in the last ten minutes, a tenth resent."""
    events: list[dict[str, Any]] = []
    for i in range(EVENTS):
        model = rng.choice(MODELS)
        metadata = {"endpoint": rng.choice(ENDPOINTS), **({"model": model} if model else {})}
        events.append(
            {
                "metric": "tokens",
                "quantity": Decimal(rng.randint(1, 10**6)) / 1000,
                "idempotencyKey": f"d{i:05d}",
                "timestamp": iso(now - timedelta(seconds=rng.randint(0, 600))),
                "metadata": metadata,
            }
        )
    everything = events + [dict(rng.choice(events)) for _ in range(EVENTS // 10)]
    rng.shuffle(everything)
    return everything


def sender(developer: str, requests: Any, failures: list[str]) -> Callable[[int, Container], None]:
    """A client thread's work: take requests off the queue and send them; what comes back
    temporarily_unavailable is resent with the same keys (as a careful client does: contention
    on a day's first combinations can outlast one request's attempts). Anything else but
    recorded or duplicate is a failure."""

    def deliver(container: Container, events: list[dict[str, Any]]) -> None:
        for _attempt in range(MAX_ATTEMPTS):
            single = len(events) == 1
            answer = track(container, naming(developer, events[0] if single else {"events": events}), SERVICE)
            body = answer.json()
            if answer.status == 503 and body["error"]["code"] == "temporarily_unavailable":
                continue
            if answer.status != 200:
                failures.append(f"{answer.status} {answer.body[:300]}")
                return
            results = [body] if single else body["results"]
            again = [e for e, r in zip(events, results, strict=True) if r.get("status") == "rejected"]
            codes = {(r.get("error") or {}).get("code") for r in results if r.get("status") == "rejected"}
            if codes - {"temporarily_unavailable"}:
                failures.append(f"refused: {codes}")
                return
            if not again:
                return
            events = again
        failures.append(f"{len(events)} events not answered after {MAX_ATTEMPTS} attempts")

    def send(_: int, container: Container) -> None:
        for events in drain(requests):
            deliver(container, events)

    return send


def test_groups_equal_the_reference_and_add_up_to_the_total(engine: EngineStack, report: Report) -> None:
    meters.create(meters.definition(name="tokens", aggregation="sum", dimensions=["endpoint", "model"]))
    engine.add_developers([DEVELOPER], ["tokens"])
    rng = random.Random(20261216)
    sent = sent_events(rng, datetime.now(UTC))
    requests = batched_requests(rng, sent, single_share=0.02, largest=60)
    containers = engine.containers(CLIENTS)
    failures: list[str] = []
    wall = run_threads(containers, sender(DEVELOPER, requests, failures))
    assert all_crashes(containers) == []
    assert failures == []

    records = {r["idempotencyKey"]["S"] for r in table_items(engine.dynamodb, engine.idempotency_table)}
    distinct = {e["idempotencyKey"]: e for e in sent}
    assert records == set(distinct)  # every event recorded once
    expected: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], Decimal] = defaultdict(Decimal)
    days: set[str] = set()
    for e in distinct.values():
        day = e["timestamp"][:10]
        days.add(day)
        values = (("endpoint", e["metadata"]["endpoint"]), ("model", e["metadata"].get("model", "")))
        expected[(f"DEV#{DEVELOPER}", "tokens", day, values)] += e["quantity"]
    items = table_items(engine.dynamodb, engine.usage_table)
    assert groups_in(items) == expected
    per_day = defaultdict(int)
    for _pk, _metric, day, _values in expected:
        per_day[day] += 1
    stored_counts = {
        i["sk"]["S"]: int(i["combinations"]["N"]) for i in items if i["sk"]["S"].startswith("C#")
    }
    assert stored_counts == {f"C#tokens#{day}": n for day, n in per_day.items()}

    total = sum(e["quantity"] for e in distinct.values())
    stored = counters(engine.dynamodb, engine.usage_table)
    assert sum(v for (pk, sk), (v, _) in stored.items() if sk.startswith("D#")) == total

    first, last = min(days), max(days)
    query = {"developerId": DEVELOPER, "metric": "tokens", "startDate": first, "endDate": last}
    for group_by in ("endpoint", "model", "endpoint,model"):
        entry = engine.call("GET", "/v1/usage", auth=SERVICE, query={**query, "groupBy": group_by}).json()
        tokens = entry["metrics"]["tokens"]
        assert tokens["consumed"] == total
        assert sum(Decimal(str(g["consumed"])) for g in tokens["groups"]) == total
        assert sum(g["events"] for g in tokens["groups"]) == len(distinct)
        figures = [g["consumed"] for g in tokens["groups"]]
        assert figures == sorted(figures, reverse=True)
        names = group_by.split(",")
        reference: dict[tuple[str, ...], Decimal] = defaultdict(Decimal)
        for (_pk, _metric, _day, values), consumed in expected.items():
            reference[tuple(dict(values)[n] for n in names)] += consumed
        assert {
            tuple(g["dimensions"][n] for n in names): Decimal(str(g["consumed"])) for g in tokens["groups"]
        } == reference
    report(
        f"{len(sent)} sends ({EVENTS} distinct events, {len(expected)} combinations) from {CLIENTS} clients "
        f"in {wall:.1f} s: every combination equals the reference, groups add up to the total"
    )


# ---- the cardinality bound ------------------------------------------------------------------

OVERFLOW_CLIENTS = 8
VALUES = 450
BOUND = 300  # DimensionCardinality for this test (the template's default, 1,000, is a parameter)
CROWDED = "dev_overflow"


def test_values_past_the_bound_in_a_day_count_under_other(
    engine: EngineStack, report: Report, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIMENSION_CARDINALITY", str(BOUND))
    settings.cache_clear()  # before the containers fork: they read the bound at their cold start
    meters.create(meters.definition(name="calls", aggregation="count", dimensions=["endpoint"]))
    engine.add_developers([CROWDED], ["calls"])
    rng = random.Random(20261217)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    sent = [
        {"metric": "calls", "idempotencyKey": f"o{i:05d}", "metadata": {"endpoint": f"/v1/e{i:04d}"}}
        for i in range(VALUES)
    ]
    rng.shuffle(sent)
    requests = batched_requests(rng, sent, single_share=0.02, largest=60)
    containers = engine.containers(OVERFLOW_CLIENTS)
    failures: list[str] = []
    wall = run_threads(containers, sender(CROWDED, requests, failures))
    assert all_crashes(containers) == []
    assert failures == []

    items = table_items(engine.dynamodb, engine.usage_table)
    combinations = [i for i in items if i["sk"]["S"].startswith(f"G#calls#{today}#")]
    values = [i["dimensions"]["M"]["endpoint"]["S"] for i in combinations]
    named = [v for v in values if v != "(other)"]
    assert len(named) == len(set(named)) == BOUND
    assert values.count("(other)") == 1
    assert {
        int(i["events"]["N"]) for i in combinations if i["dimensions"]["M"]["endpoint"]["S"] != "(other)"
    } == {1}
    assert sum(int(i["events"]["N"]) for i in combinations) == VALUES
    [count] = [int(i["combinations"]["N"]) for i in items if i["sk"]["S"] == f"C#calls#{today}"]
    assert count == BOUND
    records = table_items(engine.dynamodb, engine.idempotency_table)
    counted_as = [r["dimensions"]["M"]["endpoint"]["S"] for r in records]
    assert counted_as.count("(other)") == VALUES - BOUND
    assert sorted(v for v in counted_as if v != "(other)") == sorted(named)

    answer = engine.call(
        "GET",
        "/v1/usage",
        auth=SERVICE,
        query={"developerId": CROWDED, "metric": "calls", "period": "day", "groupBy": "endpoint"},
    ).json()["metrics"]["calls"]
    assert (answer["consumed"], answer["events"]) == (VALUES, VALUES)
    assert answer["groups"][0] == {
        "dimensions": {"endpoint": "(other)"},
        "consumed": VALUES - BOUND,
        "events": VALUES - BOUND,
    }
    assert len(answer["groups"]) == BOUND + 1
    assert sum(g["consumed"] for g in answer["groups"]) == VALUES
    report(
        f"{VALUES} distinct values from {OVERFLOW_CLIENTS} clients in {wall:.1f} s: {BOUND} combinations and "
        f"(other) with {VALUES - BOUND} events; the day's count of combinations is exactly {count}"
    )
