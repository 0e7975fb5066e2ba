"""Alerts end to end on DynamoDB Local: clients drive developers past 80, 90 and 100 % of a hard
limit at once while the stream consumer is killed and started again and duplicate stream
batches are injected; a local receiver gets exactly one signed delivery per (developer, meter,
threshold) and one usage.limit.reached per developer.

CI runs a small size (ALERTS_DEVELOPERS=4, ALERTS_CLIENTS=4); the issue's size is
`ALERTS_DEVELOPERS=20 ALERTS_CLIENTS=16 .venv/bin/pytest tests/engine/test_alerts.py`.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from usage_meter.domain import accounts, webhooks
from usage_meter.models.accounts import MetricLimit, Plan
from usage_meter.store import accounts as account_store
from usage_meter.store import dynamodb as store_db
from usage_meter_admin.listener import Received, Receiver
from usage_meter_local.alerting import AlertPipeline
from usage_meter_local.outbox import environment as outbox_environment
from usage_meter_local.template import function_environment

from engine.conftest import EngineStack
from engine.support import run_threads, track
from helpers import SERVICE

pytestmark = pytest.mark.engine

DEVELOPERS = int(os.environ.get("ALERTS_DEVELOPERS", "4"))
CLIENTS = int(os.environ.get("ALERTS_CLIENTS", "4"))
LIMIT = 100
STEP = 10  # every event: 10 units, so the counter lands on 80, 90 and 100 exactly
EVENTS_PER_DEVELOPER = LIMIT // STEP + 2  # the last two are refused (the limit is hard)
WAIT_S = 60


@pytest.fixture
def pipeline(
    engine: EngineStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[AlertPipeline, Receiver, list[Received]]]:
    """The stream consumer, queue worker and a receiver, on the engine's tables; the client
    containers are forked first (before any thread of the pipeline exists)."""
    engine.containers(CLIENTS)
    env = {**function_environment("AlertsFunction", engine.tables), **outbox_environment(tmp_path / "outbox")}
    env["DYNAMODB_ENDPOINT_URL"] = os.environ["DYNAMODB_ENDPOINT_URL"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    store_db.reset()
    receiver = Receiver([]).start()
    received = receiver.received
    running = AlertPipeline(dict(os.environ), tmp_path, duplicate_rate=0.3)
    yield running, receiver, received
    running.stop()
    receiver.stop()


def _arrivals(received: list[Received], want: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and len(received) < want:
        time.sleep(0.1)
    time.sleep(1.5)  # a late duplicate would arrive now


def test_one_signed_delivery_per_threshold_through_kills_and_duplicates(
    engine: EngineStack,
    pipeline: tuple[AlertPipeline, Receiver, list[Received]],
    report: Callable[[str], None],
) -> None:
    running, receiver, received = pipeline
    account_store.put_plan(
        Plan(
            name="engine-alerts", metrics={"api_calls": MetricLimit(limit=Decimal(LIMIT), enforcement="hard")}
        )
    )
    developers = [f"dev_alert{i:02d}" for i in range(DEVELOPERS)]
    for developer in developers:
        accounts.create_developer(developer, "engine-alerts", developer)
    created = webhooks.add(receiver.url)  # a global endpoint: every developer's events
    receiver.secrets.append(created.secret)
    running.start()

    # each developer's events, in requests of 1 to 3 events (a batch crosses several thresholds at once)
    requests: list[tuple[str, list[dict[str, object]]]] = []
    for developer in developers:
        events = [
            {
                "metric": "api_calls",
                "quantity": STEP,
                "developerId": developer,
                "idempotencyKey": uuid.uuid4().hex,
            }
            for _ in range(EVENTS_PER_DEVELOPER)
        ]
        while events:
            size = random.randint(1, 3)
            requests.append((developer, events[:size]))
            events = events[size:]
    random.shuffle(requests)
    done = Counter[str]()
    killed = threading.Event()

    def work(index: int, container: object) -> None:
        for number, (_, events) in enumerate(requests[index::CLIENTS]):
            body = {"events": events} if len(events) > 1 else events[0]
            answer = track(container, body, SERVICE)  # type: ignore[arg-type]
            assert answer.status in (200, 207, 429), answer.body
            done["requests"] += 1
            if index == 0 and number == len(requests) // CLIENTS // 2 and not killed.is_set():
                running.kill_consumer()  # mid-way: whatever batch it held comes again
                killed.set()
                running.start_consumer(wait_s=0)

    run_threads(engine._containers[:CLIENTS], work)
    assert killed.is_set()
    expected = DEVELOPERS * 4  # 80, 90, 100 and usage.limit.reached
    _arrivals(received, expected)

    assert [r.error for r in received if r.event is None] == []  # every signature verifies
    events = [r.event for r in received if r.event is not None]
    ids = Counter(e["id"] for e in events)
    assert [i for i, n in ids.items() if n > 1] == []  # nothing delivered twice
    thresholds = Counter(
        (e["data"]["developerId"], e["data"]["metric"], e["data"]["threshold"])
        for e in events
        if e["type"] == "usage.threshold.reached"
    )
    assert thresholds == Counter({(d, "api_calls", t): 1 for d in developers for t in (80, 90, 100)})
    reached = Counter(e["data"]["developerId"] for e in events if e["type"] == "usage.limit.reached")
    assert reached == Counter(dict.fromkeys(developers, 1))
    for event in events:
        if event["type"] == "usage.threshold.reached":
            assert Decimal(str(event["data"]["consumed"])) >= LIMIT * event["data"]["threshold"] / 100
    latencies = sorted(
        r.received_at - _epoch(r.event["data"]["crossedAt"])
        for r in received
        if r.event is not None and r.event["type"] == "usage.threshold.reached"
    )
    report(
        f"{DEVELOPERS} developers, {CLIENTS} clients, {done['requests']} requests: {len(events)} deliveries, "
        f"crossing->received p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )


def _epoch(text: str) -> float:
    from usage_meter.models.timestamps import parse_rfc3339

    return parse_rfc3339(text).timestamp()
