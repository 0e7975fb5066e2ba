"""Fault injection: DynamoDB throttles, fails with 500s and times out after applying a write,
while clients retry with the same idempotency keys: the counters stay exact.

Faults are injected at botocore's HTTP layer (`before-send`), so botocore's own retries, the
service's retries and its error mapping all run as in production. A "timeout after applied"
really sends the request to DynamoDB Local and only then raises ReadTimeoutError.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from usage_meter_local.invoke import Answer

from engine.conftest import EngineStack
from engine.support import (
    Container,
    Faults,
    all_crashes,
    batched_requests,
    compose,
    count_commits,
    drain,
    expected_counters,
    keyed_events,
    run_threads,
    total_stats,
    track,
    without_sdk_retries,
)
from helpers import SERVICE, counters, table_items

pytestmark = pytest.mark.engine

Report = Callable[[str], None]
MAX_ATTEMPTS = 30  # per request, by the client; each retry sends the very same body


@pytest.mark.parametrize(
    "sdk",
    [
        pytest.param(
            "sdk-retries", id="production-client"
        ),  # botocore first retries each call up to 4 times, as in production
        pytest.param("no-sdk-retries", id="no-sdk-retries"),  # every fault reaches the service's code
    ],
)
def test_counts_stay_exact_under_injected_faults(engine: EngineStack, report: Report, sdk: str) -> None:
    rng = random.Random(7)
    developers = [f"dev_fault{i}" for i in range(4)]
    metrics = ["api_calls", "tokens"]
    engine.add_developers(developers, metrics)
    now = datetime.now(UTC)
    distinct, sent = keyed_events(rng, developers, metrics, now, 400, 80, "fault", 4)
    requests = batched_requests(rng, sent, single_share=0.5, largest=6)
    request_count = requests.qsize()

    faults = Faults(rate=0.2, kinds=("throttle", "server_error", "timeout_after_applied", "conflict"))
    setup = compose(count_commits, faults.install)
    if sdk == "no-sdk-retries":
        setup = compose(without_sdk_retries, count_commits, faults.install)
    containers = engine.containers(8, setup)
    outcomes: dict[str, list[tuple[str, str]]] = defaultdict(list)
    refusals: Counter[str] = Counter()
    unexpected: list[str] = []
    attempts_needed: Counter[int] = Counter()

    def deliver(container: Container, events: list[dict[str, Any]]) -> None:
        """What a careful client does: resend until 200, then resend the batch items refused as
        temporarily_unavailable (nothing of them was written), always with the same keys."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            body: Any = events[0] if len(events) == 1 else {"events": events}
            answer: Answer = track(container, body, SERVICE)
            if answer.status != 200:
                # the only acceptable refusal: 503 with the error shape, safe to retry with the same keys
                error = (answer.json() or {}).get("error", {}) if answer.body.startswith("{") else {}
                refusals[f"{answer.status} {error.get('code')}"] += 1
                if (answer.status, error.get("code")) != (503, "temporarily_unavailable"):
                    unexpected.append(f"{answer.status} {answer.body[:300]}")
                time.sleep(0.005 * attempt)
                continue
            again = []
            for event, result in zip(events, answer.json()["results"], strict=True):
                code = result.get("error", {}).get("code")
                if result["status"] == "rejected" and code == "temporarily_unavailable":
                    refusals["200 item temporarily_unavailable"] += 1
                    again.append(event)
                else:
                    outcomes[event["idempotencyKey"]].append((result["status"], result.get("recordedAt", "")))
            if not again:
                attempts_needed[attempt] += 1
                return
            events = again
        unexpected.append(f"{len(events)} events not accepted after {MAX_ATTEMPTS} attempts")

    def send(_: int, container: Container) -> None:
        for events in drain(requests):
            deliver(container, events)

    wall = run_threads(containers, send)
    stats = total_stats(containers)

    crashes = all_crashes(containers)
    assert crashes == [], crashes[0]
    assert unexpected == []
    # what landed: each distinct event exactly once, whatever was retried
    assert counters(engine.dynamodb, engine.usage_table) == expected_counters(distinct)
    records = {
        r["idempotencyKey"]["S"]: r["recordedAt"]["S"]
        for r in table_items(engine.dynamodb, engine.idempotency_table)
    }
    assert len(records) == 400
    # every final answer tells the stored outcome; a key is "recorded" at most once (a write whose
    # answer was lost is reported as a duplicate of itself on the client's retry)
    for key, answers in outcomes.items():
        assert {recorded_at for _, recorded_at in answers} == {records[key]}, key
        statuses = Counter(status for status, _ in answers)
        assert set(statuses) <= {"recorded", "duplicate"}, (key, statuses)
        assert statuses["recorded"] <= 1, (key, statuses)
    assert len(outcomes) == 400
    # the faults really happened, including writes that were applied and then timed out
    assert stats["throttle:TransactWriteItems"] > 0
    assert stats["server_error:TransactWriteItems"] > 0
    assert stats["conflict:TransactWriteItems"] > 0
    assert stats["timeout_after_applied:TransactWriteItems"] > 0
    injected = {k: v for k, v in sorted(stats.items()) if ":" in k}
    report(
        f"{request_count} requests ({len(sent)} events) in {wall:.1f} s; injected {sum(injected.values())} "
        f"faults {injected}; client refusals {dict(refusals)}; attempts per request {dict(sorted(attempts_needed.items()))}; "
        f"{stats['transactions']} transactions, {stats['retryable_cancellations']} retried cancellations, "
        f"{stats['commits_in_doubt']} retried unchanged after no definite answer"
    )
