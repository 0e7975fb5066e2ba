"""Corrections under real concurrency on DynamoDB Local: events over every aggregation, then
random cancels and amends from 16 clients (each through its own Lambda-like container), with
injected faults and clients resending what comes back temporarily_unavailable. Every counter,
group and marker equals a reference computed from the final event log, and the log lists
exactly the events sent, each with its final status and revisions. And 32 clients cancelling
one event at once: exactly one `cancelled`.

Size: CORRECTIONS_ENGINE_EVENTS events (default 96, so that CI stays quick; the issue's proof size is 2000, with a
quarter cancelled and a quarter amended: `CORRECTIONS_ENGINE_EVENTS=2000 make engine`).
"""

from __future__ import annotations

import hashlib
import os
import queue
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from usage_meter.domain import meters
from usage_meter.domain.periods import day_key, month_key

from engine.conftest import EngineStack
from engine.support import Container, Faults, all_crashes, as_json, drain, run_threads, total_stats
from helpers import SERVICE, counters, iso, table_items

pytestmark = pytest.mark.engine

Report = Callable[[str], None]

EVENTS = int(os.environ.get("CORRECTIONS_ENGINE_EVENTS", "96"))
CLIENTS = 16
DEVELOPER = "dev_fixes"
MAX_ATTEMPTS = 30
METRICS = {
    "calls": "sum",
    "hits": "count",
    "peak": "max",
    "gauge": "latest",
    "visitors": "unique_count",
    "agents": "level",
}
ENDPOINTS = ("/a", "/b", "/c")


def counted(event: dict[str, Any]) -> Decimal:
    """What an event's record holds as its quantity: its contribution (1 for count and unique_count)."""
    return Decimal(1) if event["metric"] in ("hits", "visitors") else Decimal(str(event["quantity"]))


def sent_events(rng: random.Random, now: datetime) -> list[dict[str, Any]]:
    """Keyed events over the six meters, spread over the last three days."""
    events = []
    names = list(METRICS)
    for i in range(EVENTS):
        metric = names[i % len(names)]
        moment = now - timedelta(minutes=10) - timedelta(seconds=rng.randint(0, 3 * 86_400))
        event: dict[str, Any] = {"metric": metric, "idempotencyKey": f"f{i:05d}", "timestamp": iso(moment)}
        if metric == "agents":
            event["quantity"] = Decimal(rng.choice([1, 2, 3, 5]))  # up only: the level stays >= 0 as tracked
        elif metric != "hits":
            event["quantity"] = Decimal(rng.randint(1, 10**5)) / 100
        if metric == "visitors":
            event["metadata"] = {"user": f"u{rng.randint(1, 8)}"}
        if metric == "calls":
            event["metadata"] = {"endpoint": rng.choice(ENDPOINTS)}
        events.append(event)
    return events


def amendment(rng: random.Random, event: dict[str, Any]) -> dict[str, Any]:
    """A change that differs from the event as sent."""
    metric = event["metric"]
    if metric == "visitors":
        return {"metadata": {"user": f"u{rng.randint(9, 12)}"}}
    if metric == "hits":
        return {"metadata": {"note": "amended"}}
    if metric == "agents":
        return {"quantity": Decimal(rng.choice([-9, -1, 4, 6]))}  # some take the level below zero
    change: dict[str, Any] = {"quantity": event["quantity"] + Decimal(rng.randint(1, 500)) / 100}
    if metric == "calls" and rng.random() < 0.5:
        change["metadata"] = {"endpoint": rng.choice(ENDPOINTS) + "x"}
    return change


def record_all(engine: EngineStack, sent: list[dict[str, Any]]) -> None:
    """Track the events in batches of 25, resending what is temporarily_unavailable (same keys)."""
    waiting = list(sent)
    for _ in range(MAX_ATTEMPTS):
        again = []
        for start in range(0, len(waiting), 25):
            part = waiting[start : start + 25]
            results = engine.track({"events": part}, developer=DEVELOPER).json()["results"]
            again += [
                e for e, r in zip(part, results, strict=True) if r["status"] not in ("recorded", "duplicate")
            ]
        waiting = again
        if not waiting:
            return
    raise AssertionError(f"{len(waiting)} events not recorded")


def deliver(container: Container, path: str, body: dict[str, Any]) -> tuple[int, str]:
    """One request, resent while it is 503 temporarily_unavailable: (status, status or code)."""
    for _ in range(MAX_ATTEMPTS):
        answer = container.call("POST", path, body=as_json(body), authorizer=SERVICE)
        payload = answer.json()
        code = payload.get("status") or payload.get("error", {}).get("code") or answer.body[:200]
        if answer.status == 503 and code == "temporarily_unavailable":
            continue
        return answer.status, code
    return 503, "gave_up"


def log_of(engine: EngineStack) -> dict[str, dict[str, Any]]:
    """The developer's whole event log, paged through GET /v1/usage/events (service key)."""
    found: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        query = {"developerId": DEVELOPER, "limit": "100", **({"cursor": cursor} if cursor else {})}
        page = engine.call("GET", "/v1/usage/events", auth=SERVICE, query=query).json()
        for event in page["events"]:
            assert event["idempotencyKey"] not in found
            found[event["idempotencyKey"]] = event
        cursor = page["nextCursor"]
        if cursor is None:
            return found


def reference(live: list[dict[str, Any]]) -> tuple[dict[Any, Any], dict[Any, Any], set[str]]:
    """From the live events of the final log: every day and month counter (and the level),
    every dimension group, every unique_count marker."""
    pk = f"DEV#{DEVELOPER}"
    values: dict[tuple[str, str], Decimal] = {}
    events: Counter[tuple[str, str]] = Counter()
    users: dict[tuple[str, str], set[str]] = {}
    groups: dict[tuple[str, str], list[Any]] = {}
    for e in sorted(live, key=lambda e: (e["timestamp"], e["idempotencyKey"])):
        moment = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
        metric, quantity = e["metric"], Decimal(str(e["quantity"]))
        windows = [f"D#{day_key(moment)}#{metric}", f"M#{month_key(moment)}#{metric}"]
        windows += ["L#current#agents"] if metric == "agents" else []
        for sk in windows:
            slot = (pk, sk)
            events[slot] += 1
            if metric == "peak":
                values[slot] = max(values.get(slot, Decimal(0)), quantity)
            elif metric == "gauge":
                values[slot] = quantity
            elif metric == "visitors":
                users.setdefault(slot, set()).add(e["metadata"]["user"])
                values[slot] = Decimal(len(users[slot]))
            else:
                values[slot] = values.get(slot, Decimal(0)) + quantity
        if metric == "calls":
            group = groups.setdefault((day_key(moment), e["metadata"]["endpoint"]), [Decimal(0), 0])
            group[0] += quantity
            group[1] += 1
    markers = {
        f"U#{sk[0]}#{sk.split('#')[1]}#visitors#{hashlib.sha256(user.encode()).hexdigest()[:32]}"
        for (_, sk), seen in users.items()
        if not sk.startswith("L#")
        for user in seen
    }
    return {s: (values[s], events[s]) for s in values}, {k: tuple(v) for k, v in groups.items()}, markers


def stored_state(engine: EngineStack) -> tuple[dict[Any, Any], dict[Any, Any], set[str]]:
    items = [
        i for i in table_items(engine.dynamodb, engine.usage_table) if i["pk"]["S"] == f"DEV#{DEVELOPER}"
    ]
    found = counters(engine.dynamodb, engine.usage_table)
    emptied = {k: v for k, v in found.items() if k[0] == f"DEV#{DEVELOPER}" and v[1] == 0}
    assert all(v == (Decimal(0), 0) for v in emptied.values()), emptied  # every event out: nothing left
    live = {k: v for k, v in found.items() if k[0] == f"DEV#{DEVELOPER}" and v[1] != 0}
    groups = {
        (i["day"]["S"], i["dimensions"]["M"]["endpoint"]["S"]): (
            Decimal(i["consumed"]["N"]),
            int(i["events"]["N"]),
        )
        for i in items
        if i["sk"]["S"].startswith("G#") and int(i["events"]["N"])
    }
    markers = {i["sk"]["S"] for i in items if i["sk"]["S"].startswith("U#")}
    return live, groups, markers


def test_corrections_from_16_clients_leave_every_figure_equal_to_the_final_log(
    engine: EngineStack, report: Report
) -> None:
    for name, aggregation in METRICS.items():
        extra: dict[str, Any] = {"unique_by": "user"} if aggregation == "unique_count" else {}
        if name == "calls":
            extra["dimensions"] = ["endpoint"]
        meters.create(meters.definition(name=name, aggregation=aggregation, **extra))
    engine.add_developers([DEVELOPER], list(METRICS))
    rng = random.Random(20261203)
    now = datetime.now(UTC)
    sent = sent_events(rng, now)
    record_all(engine, sent)

    cancels = rng.sample(sent, len(sent) // 4)
    amends = rng.sample(sent, len(sent) // 4)  # some of them cancelled too, at the same time
    work: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    mixed = [("cancel", e) for e in cancels] + [("amend", e) for e in amends]
    rng.shuffle(mixed)
    for item in mixed:
        work.put(item)
    injected = Faults(rate=0.05, kinds=("throttle", "server_error", "timeout_after_applied", "conflict"))
    containers = engine.containers(CLIENTS, injected.install)
    answers: dict[tuple[str, str], tuple[int, str]] = {}
    changes: dict[str, dict[str, Any]] = {}

    def correct(_: int, container: Container) -> None:
        local = random.Random(_)
        for action, event in drain(work):
            body: dict[str, Any] = {
                "developerId": DEVELOPER,
                "idempotencyKey": event["idempotencyKey"],
                "reason": action,
            }
            if action == "amend":
                change = amendment(local, event)
                changes[event["idempotencyKey"]] = change
                body.update(change)
            answers[(action, event["idempotencyKey"])] = deliver(
                container, f"/v1/usage/events/{action}", body
            )

    wall = run_threads(containers, correct)
    assert all_crashes(containers) == []
    outcomes = Counter(f"{action}:{answer[1]}" for (action, _), answer in answers.items())
    assert not [a for a in answers.values() if a[0] >= 500], outcomes

    logged = log_of(engine)
    assert set(logged) == {e["idempotencyKey"] for e in sent}  # exactly the events sent
    by_key = {e["idempotencyKey"]: e for e in sent}
    for key, event in logged.items():
        cancelled = answers.get(("cancel", key), (0, ""))[1] in ("cancelled", "already_cancelled")
        amended = answers.get(("amend", key), (0, ""))[1] in ("amended", "unchanged")
        assert event["status"] == ("cancelled" if cancelled else "amended" if amended else "recorded"), (
            key,
            event,
        )
        assert event["revision"] == len(event["revisions"]) == int(cancelled) + int(amended), (key, event)
        if amended:
            change = changes[key]
            assert Decimal(str(event["quantity"])) == counted({**by_key[key], **change}), (key, event)
            assert event["metadata"] == change.get("metadata", by_key[key].get("metadata")), (key, event)
        elif not cancelled:
            assert Decimal(str(event["quantity"])) == counted(by_key[key]), (key, event)
    records = {r["idempotencyKey"]["S"]: r for r in table_items(engine.dynamodb, engine.idempotency_table)}
    assert {k: r.get("status", {}).get("S") for k, r in records.items()} == {
        k: e["status"] for k, e in logged.items()
    }

    live = [e for e in logged.values() if e["status"] != "cancelled"]
    expected_counters, expected_groups, expected_markers = reference(live)
    stored_counters, stored_groups, stored_markers = stored_state(engine)
    assert stored_counters == expected_counters
    assert stored_groups == expected_groups
    assert stored_markers == expected_markers
    level = expected_counters[(f"DEV#{DEVELOPER}", "L#current#agents")][0]
    assert level >= 0
    stats = total_stats(containers)
    report(
        f"{EVENTS} events, {len(cancels)} cancels and {len(amends)} amends from {CLIENTS} clients in {wall:.1f} s "
        f"({len(mixed) / wall:.0f} corrections/s) with {sum(stats.values())} faults injected: {dict(sorted(outcomes.items()))}; "
        "every counter, group and marker equals the final log's reference"
    )


def test_32_clients_cancelling_one_event_cancel_it_once(engine: EngineStack, report: Report) -> None:
    meters.create(meters.definition(name="peak", aggregation="max"))
    engine.add_developers([DEVELOPER], ["api_calls", "peak"])
    now = iso(datetime.now(UTC) - timedelta(minutes=1))
    events = [
        {"metric": "api_calls", "quantity": 7, "idempotencyKey": "race", "timestamp": now},
        {"metric": "api_calls", "quantity": 2, "idempotencyKey": "stays", "timestamp": now},
        {"metric": "peak", "quantity": 9, "idempotencyKey": "race_peak", "timestamp": now},
        {"metric": "peak", "quantity": 4, "idempotencyKey": "stays_peak", "timestamp": now},
    ]
    assert engine.track({"events": events}, developer=DEVELOPER).json()["recorded"] == 4
    containers = engine.containers(32)
    answers: list[tuple[int, str]] = []

    def cancel(index: int, container: Container) -> None:
        key = "race" if index % 2 == 0 else "race_peak"
        action = "cancel" if index < 24 else "amend"  # some amend the event being cancelled
        body = {
            "developerId": DEVELOPER,
            "idempotencyKey": key,
            "reason": "race",
            **({"quantity": 3} if action == "amend" else {}),
        }
        answers.append((index, deliver(container, f"/v1/usage/events/{action}", body)[1]))

    wall = run_threads(containers, cancel)
    assert all_crashes(containers) == []
    cancels = Counter(outcome for index, outcome in answers if index < 24)
    assert cancels["cancelled"] == 2, cancels  # one per event: the others already_cancelled
    assert cancels["already_cancelled"] == 22, cancels
    amends = Counter(outcome for index, outcome in answers if index >= 24)
    assert set(amends) <= {"amended", "unchanged", "event_cancelled"}, amends
    stored = counters(engine.dynamodb, engine.usage_table)
    day, month = (
        day_key(datetime.now(UTC) - timedelta(minutes=1)),
        month_key(datetime.now(UTC) - timedelta(minutes=1)),
    )
    assert stored[(f"DEV#{DEVELOPER}", f"D#{day}#api_calls")] == (Decimal(2), 1)
    assert stored[(f"DEV#{DEVELOPER}", f"M#{month}#peak")] == (Decimal(4), 1)
    logged = log_of(engine)
    assert {k: e["status"] for k, e in logged.items()} == {
        "race": "cancelled",
        "race_peak": "cancelled",
        "stays": "recorded",
        "stays_peak": "recorded",
    }
    for key in ("race", "race_peak"):  # amendments that won before the cancellation are revisions too
        assert logged[key]["revision"] == 1 + sum(
            1 for i, o in answers if i >= 24 and o == "amended" and (i % 2 == 0) == (key == "race")
        )
    report(
        f"32 clients on 2 events (24 cancels, 8 amends) in {wall:.1f} s: cancels {dict(cancels)}, amends {dict(amends)}"
    )
