"""A hard limit under real concurrency: many clients race for the last units of a limit against
DynamoDB Local, and the counter lands exactly on the limit, never past it.

Every client thread sends through its own Lambda-like container (see engine/support.py); the
assertions read what landed in DynamoDB, not only what the answers claim.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from usage_meter.domain import accounts
from usage_meter.domain.periods import day_key, month_key
from usage_meter.models.accounts import MetricLimit, Plan
from usage_meter.store import accounts as account_store

from engine.conftest import EngineStack
from engine.support import (
    Container,
    Faults,
    all_crashes,
    batched_requests,
    compose,
    count_commits,
    drain,
    run_threads,
    total_stats,
    track,
)
from helpers import SERVICE, counters, iso, minute_counters, naming, table_items

pytestmark = pytest.mark.engine

Report = Callable[[str], None]

LIMIT = 300
EVENTS = 600
CLIENTS = 16
CAPPED = {"developerId": "dev_capped", "role": "developer"}  # reads; the service key tracks for it


def capped_plan(limit: int) -> None:
    account_store.put_plan(
        Plan(
            name="engine-capped", metrics={"api_calls": MetricLimit(limit=Decimal(limit), enforcement="hard")}
        )
    )


def test_hard_limit_holds_under_concurrency(engine: EngineStack, report: Report) -> None:
    """16 clients, 600 keyed events of 1 against a hard limit of 300, as singles and small
    batches: exactly 1,000 recorded, 1,000 refused, the counter exactly 1,000."""
    capped_plan(LIMIT)
    accounts.create_developer("dev_capped", "engine-capped", "dev_capped")
    rng = random.Random(20261125)
    moment = iso(datetime.now(UTC) - timedelta(minutes=1))
    sent = [
        {"metric": "api_calls", "quantity": 1, "idempotencyKey": f"cap-{i:04d}", "timestamp": moment}
        for i in range(EVENTS)
    ]
    requests = batched_requests(rng, sent, single_share=0.4, largest=8)
    request_count = requests.qsize()
    containers = engine.containers(CLIENTS, count_commits)
    outcomes: dict[str, str] = {}
    answered: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []

    def send(_: int, container: Container) -> None:
        for events in drain(requests):
            single = len(events) == 1
            request = naming(CAPPED["developerId"], events[0] if single else {"events": events})
            answer = track(container, request, SERVICE)
            answered[("single" if single else "batch", answer.status)] += 1
            body = answer.json()
            if single and answer.status == 429:
                assert body["error"]["code"] == "limit_exceeded"
                assert body["usage"]["consumed"] <= LIMIT
                outcomes[events[0]["idempotencyKey"]] = "limit_exceeded"
                continue
            if answer.status != 200:
                failures.append(f"{answer.status} {answer.body[:300]}")
                continue
            for event, result in zip(events, body["results"], strict=True):
                outcomes[event["idempotencyKey"]] = result["status"]

    wall = run_threads(containers, send)

    assert all_crashes(containers) == []
    assert failures == []
    assert {status for _, status in answered} <= {200, 429}
    assert len(outcomes) == EVENTS
    assert Counter(outcomes.values()) == {"recorded": LIMIT, "limit_exceeded": EVENTS - LIMIT}
    stamp = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    assert counters(engine.dynamodb, engine.usage_table) == {
        ("DEV#dev_capped", f"D#{day_key(stamp)}#api_calls"): (Decimal(LIMIT), LIMIT),
        ("DEV#dev_capped", f"M#{month_key(stamp)}#api_calls"): (Decimal(LIMIT), LIMIT),
    }
    assert sum(minute_counters(engine.dynamodb, engine.usage_table).values()) == LIMIT
    records = {r["idempotencyKey"]["S"] for r in table_items(engine.dynamodb, engine.idempotency_table)}
    assert records == {key for key, status in outcomes.items() if status == "recorded"}

    access = engine.call("GET", "/v1/entitlements/api_calls", auth=CAPPED).json()
    assert (access["hasAccess"], access["consumed"], access["remaining"]) == (False, LIMIT, 0)

    # replays: a recorded event answers duplicate, a refused one is refused again
    replayed = rng.sample(sorted(outcomes), 100)
    answer = engine.track(
        {"events": [sent[int(key[4:])] for key in replayed]}, developer=CAPPED["developerId"]
    )
    assert answer.status == 200
    assert [r["status"] for r in answer.json()["results"]] == [
        "duplicate" if outcomes[key] == "recorded" else "limit_exceeded" for key in replayed
    ]
    assert counters(engine.dynamodb, engine.usage_table)[
        ("DEV#dev_capped", f"M#{month_key(stamp)}#api_calls")
    ] == (Decimal(LIMIT), LIMIT)

    stats = total_stats(containers)
    report(
        f"{EVENTS} events against a hard limit of {LIMIT} from {CLIENTS} clients in {request_count} "
        f"requests ({answered[('single', 200)] + answered[('single', 429)]} singles: "
        f"{answered[('single', 429)]} answered 429) in {wall:.1f} s ({EVENTS / wall:.0f} events/s, "
        f"{request_count / wall:.0f} requests/s); {stats['transactions']} transactions, "
        f"{stats['ceiling_cancellations']} cancelled at the ceiling; counter exactly {LIMIT}"
    )


def race(
    containers: list[Container], tag: str, moment: str
) -> tuple[Counter[tuple[int, str]], list[int], float]:
    """Every container sends one keyed event of 1 at the same instant (one barrier): the answers
    as (status, outcome), the consumption each answer's usage block saw, and the wall time."""
    barrier = threading.Barrier(len(containers))
    seen: Counter[tuple[int, str]] = Counter()
    consumed_seen: list[int] = []

    def send(index: int, container: Container) -> None:
        body = {
            "metric": "api_calls",
            "quantity": 1,
            "idempotencyKey": f"{tag}-c{index}",
            "timestamp": moment,
        }
        barrier.wait()
        answer = track(container, naming(CAPPED["developerId"], body), SERVICE)
        payload = answer.json()
        if answer.status == 200:
            seen[(200, payload["results"][0]["status"])] += 1
            consumed_seen.append(payload["usage"]["consumed"])
        elif answer.status == 429:
            seen[(429, payload["error"]["code"])] += 1
            usage = payload["usage"]
            assert usage["remaining"] == max(0, usage["limit"] - usage["consumed"])
            consumed_seen.append(usage["consumed"])
        else:
            seen[(answer.status, answer.body[:200])] += 1

    wall = run_threads(containers, send)
    return seen, consumed_seen, wall


@pytest.mark.parametrize("conflicts", ["from-engine", "injected"])
def test_clients_released_at_once_take_exactly_the_room_left(
    engine: EngineStack, report: Report, conflicts: str
) -> None:
    """32 clients released at one barrier, each with one event of 1, when 10 units are left: 10
    are recorded, 22 answered 429, round after round (the plan's limit raised by 10 each time).
    The "injected" run also cancels a quarter of the transactions with TransactionConflict, so
    ceiling refusals and contention retries interleave."""
    capped_plan(10)
    accounts.create_developer("dev_capped", "engine-capped", "dev_capped")
    setup = count_commits
    if conflicts == "injected":
        setup = compose(
            count_commits, Faults(rate=0.25, kinds=("conflict",), operations=("TransactWriteItems",)).install
        )
    containers = engine.containers(CLIENTS, setup)
    moment = iso(datetime.now(UTC) - timedelta(minutes=1))
    stamp = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    month = ("DEV#dev_capped", f"M#{month_key(stamp)}#api_calls")
    rounds, room = 5, 10
    walls: list[float] = []
    for round_ in range(rounds):
        if round_:
            capped_plan(room * (round_ + 1))  # applies from the next request
        seen, consumed_seen, wall = race(containers, f"r{round_}", moment)
        walls.append(wall)

        limit = room * (round_ + 1)
        assert all_crashes(containers) == []
        assert seen == {(200, "recorded"): room, (429, "limit_exceeded"): CLIENTS - room}, round_
        assert max(consumed_seen) == limit
        assert counters(engine.dynamodb, engine.usage_table)[month] == (Decimal(limit), limit)

    total = room * rounds
    records = table_items(engine.dynamodb, engine.idempotency_table)
    assert len(records) == total
    stats = total_stats(containers)
    if conflicts == "injected":
        assert stats["conflict:TransactWriteItems"] > 0
    report(
        f"{rounds} rounds of {CLIENTS} clients at once for the last {room} units: {room} recorded, "
        f"{CLIENTS - room} refused each round, {', '.join(f'{w:.2f}' for w in walls)} s; "
        f"{stats['transactions']} transactions, {stats['ceiling_cancellations']} cancelled at the ceiling, "
        f"{stats['conflict:TransactWriteItems']} conflicts injected"
    )
