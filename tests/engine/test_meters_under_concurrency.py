"""Meters whose counting depends on what is stored, under real concurrency on DynamoDB Local:
16 clients, each through its own Lambda-like container, race on one max meter, one latest
meter (timestamps shuffled), one unique_count meter (a few values, many repeats) and one
level meter with a ceiling (changes in both directions, some past the ceiling or below
zero), resending some events with the same keys. Every figure is compared with a reference
computed from the accepted events.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from usage_meter.domain import accounts, meters
from usage_meter.domain.periods import day_key, month_key
from usage_meter.models.accounts import MetricLimit, Plan
from usage_meter.store import accounts as account_store

from engine.conftest import EngineStack
from engine.support import Container, Faults, all_crashes, batched_requests, drain, run_threads, track
from helpers import SERVICE, counters, iso, naming, table_items

pytestmark = pytest.mark.engine

Report = Callable[[str], None]

CLIENTS = 16
EVENTS = 300
CEILING = 12
DEVELOPER = "dev_meters"
METRICS = ("peak", "gauge", "agents", "visitors")
MAX_ATTEMPTS = 20


def sent_events(rng: random.Random, now: datetime) -> list[dict[str, Any]]:
    """Keyed events over the four meters, times spread over the last hour, a tenth resent."""
    events: list[dict[str, Any]] = []
    for i in range(EVENTS):
        metric = METRICS[i % len(METRICS)]
        if metric == "agents":
            quantity = Decimal(rng.choice([1, 1, 2, 3, -1, -1, -2, -4]))
        else:
            quantity = Decimal(rng.randint(1, 10**6)) / 1000
        moment = now - timedelta(minutes=5) - timedelta(seconds=rng.randint(0, 3600))
        event = {
            "metric": metric,
            "quantity": quantity,
            "idempotencyKey": f"m{i:04d}",
            "timestamp": iso(moment),
        }
        if metric == "visitors":
            event["metadata"] = {"user": f"u{rng.randint(1, 12)}"}
        events.append(event)
    resent = [dict(rng.choice(events)) for _ in range(EVENTS // 10)]
    everything = events + resent
    rng.shuffle(everything)
    return everything


@pytest.mark.parametrize("faults", ["none", "injected"])
def test_max_latest_unique_and_level_are_exact_under_concurrency(
    engine: EngineStack, report: Report, faults: str
) -> None:
    """With faults injected (a tenth of DynamoDB attempts throttled, failed, conflicting, or
    applied and then timed out), clients resend what comes back temporarily_unavailable with
    the same keys, as a careful client does; the counters still equal the reference."""
    for name, aggregation in (("peak", "max"), ("gauge", "latest"), ("agents", "level")):
        meters.create(meters.definition(name=name, aggregation=aggregation))
    meters.create(meters.definition(name="visitors", aggregation="unique_count", unique_by="user"))
    account_store.put_plan(
        Plan(
            name="engine-meters", metrics={"agents": MetricLimit(limit=Decimal(CEILING), enforcement="hard")}
        )
    )
    accounts.create_developer(DEVELOPER, "engine-meters", DEVELOPER)
    rng = random.Random(20261202)
    now = datetime.now(UTC)
    sent = sent_events(rng, now)
    requests = batched_requests(rng, sent, single_share=0.5, largest=6)
    injected = Faults(rate=0.1, kinds=("throttle", "server_error", "timeout_after_applied", "conflict"))
    containers = engine.containers(CLIENTS, injected.install if faults == "injected" else None)
    outcomes: dict[str, set[str]] = {}
    failures: list[str] = []

    def deliver(container: Container, events: list[dict[str, Any]]) -> None:
        for _attempt in range(MAX_ATTEMPTS):
            single = len(events) == 1
            answer = track(container, naming(DEVELOPER, events[0] if single else {"events": events}), SERVICE)
            body = answer.json()
            if answer.status == 503 and body["error"]["code"] == "temporarily_unavailable":
                continue  # nothing of it was counted: the same request again
            if single and answer.status in (422, 429):
                outcomes.setdefault(events[0]["idempotencyKey"], set()).add(body["error"]["code"])
                return
            if answer.status != 200:
                failures.append(f"{answer.status} {answer.body[:300]}")
                return
            again = []
            for event, result in zip(events, body["results"], strict=True):
                code = (result.get("error") or {}).get("code")
                if code == "temporarily_unavailable":
                    again.append(event)
                    continue
                status = result["status"] if result["status"] in ("recorded", "duplicate") else code
                outcomes.setdefault(event["idempotencyKey"], set()).add(status)
            if not again:
                return
            events = again
        failures.append(f"{len(events)} events not answered after {MAX_ATTEMPTS} attempts")

    def send(_: int, container: Container) -> None:
        for events in drain(requests):
            deliver(container, events)

    wall = run_threads(containers, send)

    assert all_crashes(containers) == []
    assert failures == []
    records = {r["idempotencyKey"]["S"]: r for r in table_items(engine.dynamodb, engine.idempotency_table)}
    distinct = {e["idempotencyKey"]: e for e in sent}
    accepted = [distinct[key] for key in records]
    for key, seen in outcomes.items():
        if key in records:  # counted once; its resends are duplicates, or refused before it fit
            # (with faults, a write applied whose answer was lost is a duplicate of itself on the resend)
            assert "recorded" in seen or (faults == "injected" and "duplicate" in seen), (key, seen)
            assert seen <= {"recorded", "duplicate", "limit_exceeded", "level_below_zero"}, (key, seen)
            assert distinct[key]["metric"] == "agents" or seen <= {"recorded", "duplicate"}, (key, seen)
        else:  # only level changes are ever refused, and only by the level's bounds
            assert distinct[key]["metric"] == "agents", (key, seen)
            assert seen <= {"limit_exceeded", "level_below_zero"}, (key, seen)

    stored = counters(engine.dynamodb, engine.usage_table)
    expected = reference(accepted)
    assert {k: v for k, v in stored.items() if k[0] == f"DEV#{DEVELOPER}"} == expected
    level = expected[(f"DEV#{DEVELOPER}", "L#current#agents")][0]
    assert 0 <= level <= CEILING
    usage = engine.call("GET", "/v1/usage", auth=SERVICE, query={"developerId": DEVELOPER}).json()["metrics"]
    assert usage["agents"]["consumed"] == level
    refused = Counter(s for seen in outcomes.values() for s in seen if s not in ("recorded", "duplicate"))
    report(
        f"faults {faults}: {len(sent)} sends ({EVENTS} distinct events) over a max, a latest, a unique_count and a level meter from "
        f"{CLIENTS} clients in {wall:.1f} s: {len(records)} recorded, refused {dict(refused)}; "
        f"final level {level} of {CEILING}; every counter equals the reference"
    )


def reference(accepted: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[Decimal, int]]:
    """What the counters must hold, from the recorded events alone: per day and month, the
    largest peak, the latest gauge by (time, key), the distinct visitors, the level's net
    change; and the level."""
    pk = f"DEV#{DEVELOPER}"
    values: dict[tuple[str, str], Any] = {}
    visitors: dict[tuple[str, str], set[str]] = {}
    events: Counter[tuple[str, str]] = Counter()
    for e in sorted(accepted, key=lambda e: (e["timestamp"], e["idempotencyKey"])):
        moment = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
        windows = [f"D#{day_key(moment)}#{e['metric']}", f"M#{month_key(moment)}#{e['metric']}"]
        if e["metric"] == "agents":
            windows.append("L#current#agents")
        for sk in windows:
            slot = (pk, sk)
            events[slot] += 1
            if e["metric"] == "peak":
                values[slot] = max(values.get(slot, Decimal(0)), e["quantity"])
            elif e["metric"] == "gauge":
                values[slot] = e["quantity"]  # in (time, key) order: the last one stands
            elif e["metric"] == "visitors":
                visitors.setdefault(slot, set()).add(e["metadata"]["user"])
                values[slot] = Decimal(len(visitors[slot]))
            else:
                values[slot] = values.get(slot, Decimal(0)) + e["quantity"]
    return {slot: (values[slot], events[slot]) for slot in values}
