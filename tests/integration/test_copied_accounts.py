"""A single event in a warm container: two round trips, and still judged by the accounts of now.

The developer's profile, plan and meter come from the container's copies, and the event's
transaction checks each copy (ConditionCheck on its revision, or on its absence): a plan
edited or assigned, a meter created or archived since, applies to the very next event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from usage_meter.store import dynamodb as store_db
from usage_meter_admin import cli

from helpers import counters
from integration.conftest import Stack


@pytest.fixture
def calls(stack: Stack) -> Iterator[Counter[str]]:
    """The DynamoDB operations the service's client sends (round trips, botocore's retries too)."""
    seen: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        seen[event_name.rsplit(".", 1)[-1]] += 1

    events = store_db.client().meta.events
    events.register("before-send.dynamodb", count)
    yield seen
    events.unregister("before-send.dynamodb", count)


def one(stack: Stack, key: str, metric: str = "api_calls", quantity: int = 1) -> Any:
    return stack.track({"metric": metric, "quantity": quantity, "idempotencyKey": key})


def month(stack: Stack, metric: str) -> tuple[Any, int] | None:
    return counters(stack.dynamodb, stack.usage_table).get(("DEV#dev_alice", f"M#2026-11#{metric}"))


@pytest.fixture(autouse=True)
def november(freeze: Callable[[datetime], None]) -> None:
    freeze(datetime(2026, 11, 25, 12, tzinfo=UTC))


def test_a_warm_single_event_is_two_round_trips(stack: Stack, calls: Counter[str]) -> None:
    assert one(stack, "a").status == 200  # reads and copies the profile, plan and meter
    calls.clear()
    answer = one(stack, "b")
    assert answer.status == 200
    assert answer.json()["usage"]["consumed"] == 2
    assert int(answer.headers["ratelimit-remaining"]) == 998  # pro: 1,000 a minute, 2 used
    assert calls == {"TransactWriteItems": 1, "BatchGetItem": 1}
    calls.clear()
    assert one(stack, "b").json()["results"][0]["status"] == "duplicate"
    assert calls == {"TransactWriteItems": 1, "BatchGetItem": 1}


def test_a_plan_edited_since_applies_to_the_next_event(stack: Stack) -> None:
    assert one(stack, "a", quantity=5).status == 200
    assert cli.main(["plans", "put", "pro", "--metric", "api_calls=5:hard"]) == 0
    refused = one(stack, "b")
    assert refused.status == 429, refused.body
    assert refused.json()["error"]["code"] == "limit_exceeded"
    assert cli.main(["plans", "put", "pro", "--metric", "api_calls=100:hard"]) == 0
    assert one(stack, "c").status == 200  # the refusal's copies were dropped too
    assert month(stack, "api_calls") == (6, 2)


def test_a_plan_assigned_since_applies_to_the_next_event(stack: Stack) -> None:
    assert cli.main(["plans", "put", "tiny", "--metric", "api_calls=1:hard"]) == 0
    assert one(stack, "a").status == 200
    assert cli.main(["plans", "set", "dev_alice", "tiny"]) == 0
    assert one(stack, "b").status == 429
    assert month(stack, "api_calls") == (1, 1)


def test_a_meter_created_or_archived_since_applies_to_the_next_event(stack: Stack) -> None:
    assert one(stack, "a", "peak", 5).status == 200  # no meter yet: summed
    assert cli.main(["meters", "create", "peak2", "--aggregation", "max"]) == 0
    assert one(stack, "b", "peak2", 5).status == 200
    assert one(stack, "c", "peak2", 3).status == 200
    assert month(stack, "peak2") == (5, 2)  # the max, not the sum
    assert cli.main(["meters", "archive", "peak2"]) == 0
    archived = one(stack, "d", "peak2", 9)
    assert archived.status == 422
    assert archived.json()["error"]["code"] == "meter_archived"
    assert month(stack, "peak2") == (5, 2)


def test_a_meter_created_for_a_metric_already_copied_as_undeclared(stack: Stack) -> None:
    assert one(stack, "a", "gauge", 5).status == 200  # copied: no meter
    assert cli.main(["meters", "create", "gauge", "--aggregation", "max"]) == 0
    assert one(stack, "b", "gauge", 3).status == 200
    assert month(stack, "gauge") == (5, 2)  # judged by the max meter created in between
