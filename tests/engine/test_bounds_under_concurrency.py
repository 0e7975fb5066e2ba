"""The bounds a plan sets that depend on stored state, under real concurrency on DynamoDB Local:
an enforced rate (requestsPerMinute, `rateEnforcement: hard`) and the 100 undeclared metrics
of a developer's catalog. 16 clients, each through its own Lambda-like container (each with
its own cache of the catalog), race; the assertions compare what landed in DynamoDB with a
reference computed from the answers.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from usage_meter.domain import accounts
from usage_meter.domain.periods import month_key
from usage_meter.models.accounts import Plan
from usage_meter.store import accounts as account_store

from engine.conftest import EngineStack
from engine.support import Container, all_crashes, batched_requests, drain, run_threads, track
from helpers import SERVICE, catalogs_in, counters, iso, minute_counters, naming, table_items

pytestmark = pytest.mark.engine

Report = Callable[[str], None]

CLIENTS = 16
RATE = 50
RATE_EVENTS = 200
METRICS = [f"feature.{i:03d}" for i in range(150)]
CATALOG_EVENTS = 400
BOUND = 100


def test_an_enforced_rate_never_overshoots(engine: EngineStack, report: Report) -> None:
    """200 single events from 16 clients for a developer allowed 50 a minute: every minute
    counter at most 50, equal to the events recorded in it, and the refused ones 429."""
    account_store.put_plan(Plan(name="engine-rate", requests_per_minute=RATE, rate_enforcement="hard"))
    accounts.create_developer("dev_rate", "engine-rate", "dev_rate")
    moment = iso(datetime.now(UTC) - timedelta(minutes=1))
    requests = batched_requests(
        random.Random(7),
        [
            {"metric": "api_calls", "quantity": 1, "idempotencyKey": f"r{i}", "timestamp": moment}
            for i in range(RATE_EVENTS)
        ],
        single_share=1.0,
        largest=1,
    )
    containers = engine.containers(CLIENTS)
    answers: Counter[tuple[int, str]] = Counter()
    retry_after: list[int] = []

    def send(_: int, container: Container) -> None:
        for events in drain(requests):
            answer = track(container, naming("dev_rate", events[0]), SERVICE)
            body = answer.json()
            code = body["error"]["code"] if answer.status != 200 else body["results"][0]["status"]
            answers[(answer.status, code)] += 1
            if answer.status == 429:
                retry_after.append(int(answer.headers["retry-after"]))
                assert answer.headers["ratelimit-remaining"] == "0"

    wall = run_threads(containers, send)

    assert all_crashes(containers) == []
    assert set(answers) <= {(200, "recorded"), (429, "rate_limited")}
    assert sum(answers.values()) == RATE_EVENTS
    recorded = answers[(200, "recorded")]
    assert answers[(429, "rate_limited")] > 0  # 200 events cannot all fit 50 a minute in this run
    assert all(1 <= seconds <= 60 for seconds in retry_after)

    minutes = minute_counters(engine.dynamodb, engine.usage_table)
    records = table_items(engine.dynamodb, engine.idempotency_table)
    by_minute = Counter(r["recordedAt"]["S"][:16] for r in records)
    assert {sk.split("#")[1]: n for (_, sk), n in minutes.items()} == dict(by_minute)
    assert max(minutes.values()) == RATE
    assert all(n <= RATE for n in minutes.values())
    assert len(records) == recorded
    stamp = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    month = counters(engine.dynamodb, engine.usage_table)[("DEV#dev_rate", f"M#{month_key(stamp)}#api_calls")]
    assert month == (Decimal(recorded), recorded)
    report(
        f"{RATE_EVENTS} single events from {CLIENTS} clients at an enforced {RATE}/min: {recorded} recorded "
        f"over {len(minutes)} minute(s) (most in one minute: {max(minutes.values())}), "
        f"{answers[(429, 'rate_limited')]} answered 429, in {wall:.1f} s"
    )


def test_the_catalog_bound_holds_under_concurrency(engine: EngineStack, report: Report) -> None:
    """400 events over 150 undeclared metrics from 16 clients in small batches: exactly 100
    metrics enter the catalog; every event of those is recorded, every other is refused
    too_many_metrics, and the counters match the recorded events."""
    account_store.put_plan(Plan(name="engine-open"))
    accounts.create_developer("dev_open", "engine-open", "dev_open")
    rng = random.Random(20261202)
    moment = iso(datetime.now(UTC) - timedelta(minutes=1))
    sent = [
        {"metric": rng.choice(METRICS), "quantity": 1, "idempotencyKey": f"c{i:04d}", "timestamp": moment}
        for i in range(CATALOG_EVENTS)
    ]
    requests = batched_requests(rng, sent, single_share=0.3, largest=10)
    containers = engine.containers(CLIENTS)
    outcomes: dict[str, tuple[str, str | None]] = {}
    failures: list[str] = []

    def send(_: int, container: Container) -> None:
        for events in drain(requests):
            single = len(events) == 1
            answer = track(
                container, naming("dev_open", events[0] if single else {"events": events}), SERVICE
            )
            body = answer.json()
            if single and answer.status == 422:
                outcomes[events[0]["idempotencyKey"]] = ("rejected", body["error"]["code"])
            elif answer.status != 200:
                failures.append(f"{answer.status} {answer.body[:300]}")
            else:
                for event, result in zip(events, body["results"], strict=True):
                    outcomes[event["idempotencyKey"]] = (
                        result["status"],
                        (result.get("error") or {}).get("code"),
                    )

    wall = run_threads(containers, send)

    assert all_crashes(containers) == []
    assert failures == []
    assert len(outcomes) == CATALOG_EVENTS
    catalog, size = catalogs_in(table_items(engine.dynamodb, engine.usage_table))["dev_open"]
    assert (len(catalog), size) == (BOUND, BOUND)
    expected: dict[str, tuple[str, str | None]] = {
        e["idempotencyKey"]: ("recorded", None)
        if e["metric"] in catalog
        else ("rejected", "too_many_metrics")
        for e in sent
    }
    assert outcomes == expected

    per_metric: dict[str, int] = defaultdict(int)
    for e in sent:
        if e["metric"] in catalog:
            per_metric[e["metric"]] += 1
    stamp = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    month = {
        sk.split("#", 2)[2]: value
        for (pk, sk), value in counters(engine.dynamodb, engine.usage_table).items()
        if pk == "DEV#dev_open" and sk.startswith(f"M#{month_key(stamp)}#")
    }
    assert month == {m: (Decimal(n), n) for m, n in per_metric.items()}
    records: list[dict[str, Any]] = table_items(engine.dynamodb, engine.idempotency_table)
    assert {r["metric"]["S"] for r in records} == catalog
    report(
        f"{CATALOG_EVENTS} events over {len(METRICS)} undeclared metrics from {CLIENTS} clients: "
        f"catalog exactly {BOUND}, {sum(per_metric.values())} recorded, "
        f"{CATALOG_EVENTS - sum(per_metric.values())} refused too_many_metrics, in {wall:.1f} s"
    )
