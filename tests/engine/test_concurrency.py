"""Exactly-once counting under real concurrency: many clients at once against DynamoDB Local.

Every client thread sends through its own Lambda-like container (see engine/support.py), and
the assertions read what landed in DynamoDB, not what the answers claim.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from usage_meter.domain.periods import day_key, month_key
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
)
from helpers import SERVICE, counters, iso, naming, table_items

pytestmark = pytest.mark.engine

Report = Callable[[str], None]


def concurrent_sends(containers: list[Container], body: dict[str, Any]) -> tuple[list[Answer], float]:
    """Every container sends `body` at the same instant (the threads wait at one barrier)."""
    barrier = threading.Barrier(len(containers))
    answers: list[Answer] = []

    def send(_: int, container: Container) -> None:
        barrier.wait()
        answers.append(track(container, naming("dev_alice", body), SERVICE))

    return answers, run_threads(containers, send)


def test_concurrent_duplicates_record_once(engine: EngineStack, report: Report) -> None:
    """64 clients released at once with one idempotency key and one payload: one write, 63 duplicates."""
    engine.add_developers(["dev_alice"], ["api_calls"])  # the service key names an existing developer
    containers = engine.containers(64)
    rounds = 3
    moment = iso(datetime.now(UTC) - timedelta(minutes=1))
    for round_ in range(rounds):
        body = {"metric": "api_calls", "quantity": Decimal("2.5"), "idempotencyKey": f"same-{round_}"}
        answers, wall = concurrent_sends(containers, {**body, "timestamp": moment})

        assert all_crashes(containers) == []
        assert [a.status for a in answers] == [200] * 64
        results = [a.json()["results"][0] for a in answers]
        assert Counter(r["status"] for r in results) == {"recorded": 1, "duplicate": 63}
        assert len({r["recordedAt"] for r in results}) == 1
        # each answer's usage block already sees the one write (strongly consistent read)
        assert {a.json()["usage"]["consumed"] for a in answers} == {Decimal("2.5") * (round_ + 1)}
        report(f"round {round_}: 64 concurrent sends of one key answered in {wall:.2f} s")

    day, month = moment[:10], moment[:7]
    assert counters(engine.dynamodb, engine.usage_table) == {
        ("DEV#dev_alice", f"D#{day}#api_calls"): (Decimal("7.5"), rounds),
        ("DEV#dev_alice", f"M#{month}#api_calls"): (Decimal("7.5"), rounds),
    }
    records = table_items(engine.dynamodb, engine.idempotency_table)
    assert sorted(r["pk"]["S"] for r in records) == [f"dev_alice#same-{i}" for i in range(rounds)]


DISTINCT, RESENT = 700, 300  # the mixed load: distinct keyed events, and resends of them


@pytest.mark.parametrize("conflicts", ["from-engine", "injected"])
def test_hot_counter_is_exact(engine: EngineStack, report: Report, conflicts: str) -> None:
    """16 clients x 40 events on one developer/day/metric: every event counted, contention retried.

    DynamoDB Local serializes transactions, so it never answers TransactionConflict itself;
    the "injected" run cancels a quarter of the transactions with one, as DynamoDB does under
    contention, to show that each is retried until it commits.
    """
    threads, per_thread = 16, 40
    engine.add_developers(["dev_alice"], ["api_calls"])  # the service key names an existing developer
    setup = count_commits
    if conflicts == "injected":
        faults = Faults(rate=0.25, kinds=("conflict",), operations=("TransactWriteItems",))
        setup = compose(count_commits, faults.install)
    containers = engine.containers(threads, setup)
    moment = datetime.now(UTC) - timedelta(minutes=1)
    statuses: Counter[tuple[int, str]] = Counter()

    def send(index: int, container: Container) -> None:
        for n in range(per_thread):
            key = f"t{index}-{n}"
            body = {"metric": "api_calls", "quantity": 1, "idempotencyKey": key, "timestamp": iso(moment)}
            answer = track(container, naming("dev_alice", body), SERVICE)
            status = answer.json()["results"][0]["status"] if answer.status == 200 else answer.body[:200]
            statuses[(answer.status, status)] += 1

    wall = run_threads(containers, send)

    total = threads * per_thread
    assert all_crashes(containers) == []
    assert statuses == {(200, "recorded"): total}
    assert counters(engine.dynamodb, engine.usage_table) == {
        ("DEV#dev_alice", f"D#{day_key(moment)}#api_calls"): (Decimal(total), total),
        ("DEV#dev_alice", f"M#{month_key(moment)}#api_calls"): (Decimal(total), total),
    }
    assert len(table_items(engine.dynamodb, engine.idempotency_table)) == total
    stats = total_stats(containers)
    if conflicts == "injected":
        assert stats["conflict:TransactWriteItems"] > 0
        assert stats["transaction_conflicts"] == stats["conflict:TransactWriteItems"]
    assert stats["retryable_cancellations"] == stats["transaction_conflicts"]
    report(
        f"{total} events in {wall:.1f} s ({total / wall:.0f} events/s), {stats['transactions']} "
        f"transactions, {stats['transaction_conflicts']} TransactionConflict cancellations, all retried"
    )


def test_mixed_load_counts_every_distinct_event_once(engine: EngineStack, report: Report) -> None:
    """1,000 events (700 keys, 300 duplicates) over 50 developers x 3 metrics x 2 days, shuffled,
    as single events and small batches from 16 clients: every counter is the exact sum, also
    that of storage_gb, a meter over 4 shards (its shards added as the service reads them)."""
    rng = random.Random(20261125)
    developers = [f"dev_mix{i:02d}" for i in range(50)]
    metrics = ["api_calls", "tokens", "storage_gb"]
    engine.add_developers(developers, metrics, sharded={"storage_gb": 4})
    now = datetime.now(UTC)
    distinct, sent = keyed_events(rng, developers, metrics, now, DISTINCT, RESENT, "mix", 5)
    requests = batched_requests(rng, sent, single_share=0.3, largest=8)
    request_count = requests.qsize()
    containers = engine.containers(16, count_commits)
    outcomes: dict[str, list[tuple[str, str]]] = defaultdict(list)
    failures: list[str] = []

    def send(_: int, container: Container) -> None:
        for events in drain(requests):
            body: Any = events[0] if len(events) == 1 else {"events": events}
            answer = track(container, body, SERVICE)
            if answer.status != 200:
                failures.append(f"{answer.status} {answer.body[:300]}")
                continue
            for event, result in zip(events, answer.json()["results"], strict=True):
                outcomes[event["idempotencyKey"]].append((result["status"], result.get("recordedAt", "")))

    wall = run_threads(containers, send)

    assert all_crashes(containers) == []
    assert failures == []
    assert len(outcomes) == DISTINCT
    assert sum(len(v) for v in outcomes.values()) == DISTINCT + RESENT
    for key, answers in outcomes.items():
        statuses = sorted(status for status, _ in answers)
        assert statuses == ["duplicate"] * (len(answers) - 1) + ["recorded"], key
        assert len({recorded_at for _, recorded_at in answers}) == 1, key
    assert counters(engine.dynamodb, engine.usage_table) == expected_counters(distinct)
    sharded = {
        i["sk"]["S"]
        for i in table_items(engine.dynamodb, engine.usage_table)
        if "#storage_gb#" in i["sk"]["S"]
    }
    assert {sk.rsplit("#", 1)[1] for sk in sharded} == {"1", "2", "3"}  # beside each counter's own item
    records = table_items(engine.dynamodb, engine.idempotency_table)
    assert len(records) == DISTINCT
    stored = {r["idempotencyKey"]["S"]: r["recordedAt"]["S"] for r in records}
    assert stored == {key: answers[0][1] for key, answers in outcomes.items()}
    stats = total_stats(containers)
    report(
        f"{DISTINCT + RESENT:,} events in {request_count} requests in {wall:.1f} s "
        f"({(DISTINCT + RESENT) / wall:.0f} events/s, "
        f"{request_count / wall:.0f} requests/s), {stats['transactions']} transactions, "
        f"{stats['transaction_conflicts']} TransactionConflict cancellations"
    )
