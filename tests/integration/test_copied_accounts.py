"""A single event in a warm container: two round trips, and still judged by the accounts of now.

The developer's profile, plan and meter come from the container's copies, and the event's
transaction checks each copy (ConditionCheck on its revision, or on its absence): a plan
edited or assigned, a meter created or archived since, applies to the very next event.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from usage_meter.domain import accounts
from usage_meter.store import dynamodb as store_db
from usage_meter.store import keys
from usage_meter_admin import cli

from helpers import counters
from integration.conftest import Stack, accounts_items


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


TEAM = [f"dev_team{i:02d}" for i in range(24)]


def watch_checks() -> list[tuple[str, str]]:
    """From now on, the keys each transaction's ConditionChecks name (pk, sk), in order (on
    the current client: the admin commands start a new one)."""
    seen: list[tuple[str, str]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        for item in params["TransactItems"]:
            if "ConditionCheck" in item:
                key = item["ConditionCheck"]["Key"]
                seen.append((key["pk"]["S"], key["sk"]["S"]))

    store_db.client().meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", capture)
    return seen


def team_on(plan: str) -> None:
    for developer_id in TEAM:
        accounts.create_developer(developer_id, plan, developer_id)


def each(stack: Stack, key: str, metric: str = "api_calls", quantity: int = 1) -> list[int]:
    return [
        stack.track({"metric": metric, "quantity": quantity, "idempotencyKey": key}, developer=d).status
        for d in TEAM
    ]


def stamps(stack: Stack, pk: str) -> tuple[str | None, list[str]]:
    """An item's revision and its stamps' revisions."""
    items = {sk: item for (p, sk), item in accounts_items(stack).items() if p == pk}
    main = next((item for sk, item in items.items() if not sk.startswith("STAMP#")), None)
    held = [item["revision"]["S"] for sk, item in sorted(items.items()) if sk.startswith("STAMP#")]
    return (main["revision"]["S"] if main else None), held


def test_a_plan_change_applies_to_the_next_event_whatever_stamp_it_checks(
    stack: Stack,
) -> None:
    assert cli.main(["plans", "put", "team", "--metric", "api_calls=100:hard"]) == 0
    team_on("team")
    assert each(stack, "a") == [200] * 24  # every container copy made
    checked = watch_checks()
    assert each(stack, "b") == [200] * 24  # warm: checked on the stamps, not the plan item
    plan_checks = [sk for pk, sk in checked if pk == "PLAN#team"]
    assert len(plan_checks) == 24
    assert all(sk.startswith("STAMP#") for sk in plan_checks)
    picked = {keys.stamp_sk(keys.stamp_copy(d, keys.STAMP_COPIES)) for d in TEAM}
    assert set(plan_checks) == picked
    assert len(picked) > 8
    assert cli.main(["plans", "put", "team", "--metric", "api_calls=2:hard"]) == 0
    assert each(stack, "c") == [429] * 24  # the very next event of every developer
    assert cli.main(["plans", "put", "team", "--metric", "api_calls=100:hard"]) == 0
    assert each(stack, "d") == [200] * 24
    for d in TEAM:
        assert counters(stack.dynamodb, stack.usage_table)[(f"DEV#{d}", "M#2026-11#api_calls")][0] == 3


def test_a_meter_archive_applies_to_the_next_event_whatever_stamp_it_checks(
    stack: Stack,
) -> None:
    team_on("pro")
    assert cli.main(["meters", "create", "peak3", "--aggregation", "max"]) == 0
    assert each(stack, "a", "peak3", 5) == [200] * 24
    checked = watch_checks()
    assert each(stack, "b", "peak3", 3) == [200] * 24
    meter_checks = [sk for pk, sk in checked if pk == "METER#peak3"]
    assert set(meter_checks) == {keys.stamp_sk(keys.stamp_copy(d, keys.STAMP_COPIES)) for d in TEAM}
    assert all(sk.startswith("STAMP#") for sk in meter_checks)
    assert len(set(meter_checks)) > 8
    assert cli.main(["meters", "archive", "peak3"]) == 0
    assert each(stack, "c", "peak3", 9) == [422] * 24
    for d in TEAM:
        assert counters(stack.dynamodb, stack.usage_table)[(f"DEV#{d}", "M#2026-11#peak3")] == (5, 2)


def test_the_stamps_stay_in_step_with_their_item(stack: Stack) -> None:
    assert stamps(stack, "PLAN#gone") == (None, [])
    for limit in ("5", "6"):
        assert cli.main(["plans", "put", "gone", "--metric", f"api_calls={limit}:hard"]) == 0
        revision, held = stamps(stack, "PLAN#gone")
        assert revision is not None
        assert keys.stamps_of(revision) == keys.STAMP_COPIES
        assert held == [revision] * keys.STAMP_COPIES
    assert cli.main(["plans", "delete", "gone"]) == 0
    assert stamps(stack, "PLAN#gone") == (None, [])  # deleted with the plan
    assert cli.main(["meters", "create", "tally", "--aggregation", "max"]) == 0
    created, held = stamps(stack, "METER#tally")
    assert held == [created] * keys.STAMP_COPIES
    assert cli.main(["meters", "archive", "tally"]) == 0
    archived, held = stamps(stack, "METER#tally")
    assert archived != created
    assert held == [archived] * keys.STAMP_COPIES


def test_a_plan_written_without_stamps_is_checked_on_the_item(
    stack: Stack,
) -> None:
    """Items written by older code (no stamps, a plain revision) keep the item's own check; a
    stamped item whose stamps are missing is judged again from fresh reads, never trusted."""

    def older_put(limit: int) -> None:
        stack.dynamodb.put_item(
            TableName=stack.accounts_table,
            Item={
                "pk": {"S": "PLAN#old"}, "sk": {"S": "PLAN"}, "kind": {"S": "plan"}, "name": {"S": "old"},
                "metrics": {"M": {"api_calls": {"M": {"limit": {"N": str(limit)}, "enforcement": {"S": "hard"}}}}},
                "revision": {"S": uuid.uuid4().hex},
            },
        )  # fmt: skip

    older_put(100)
    accounts.create_developer("dev_old", "old", "dev_old")
    body = {"metric": "api_calls", "quantity": 1, "idempotencyKey": "a"}
    assert stack.track(body, developer="dev_old").status == 200
    checked = watch_checks()
    assert stack.track({**body, "idempotencyKey": "b"}, developer="dev_old").status == 200
    assert ("PLAN#old", "PLAN") in checked
    older_put(2)
    assert stack.track({**body, "idempotencyKey": "c"}, developer="dev_old").status == 429
    assert cli.main(["plans", "put", "old", "--metric", "api_calls=100:hard"]) == 0  # stamped now
    assert stack.track({**body, "idempotencyKey": "d"}, developer="dev_old").status == 200
    for k in range(keys.STAMP_COPIES):  # as if the stamps were never written
        stack.dynamodb.delete_item(
            TableName=stack.accounts_table, Key={"pk": {"S": "PLAN#old"}, "sk": {"S": keys.stamp_sk(k)}}
        )
    assert stack.track({**body, "idempotencyKey": "e"}, developer="dev_old").status == 200
    assert stack.track({**body, "idempotencyKey": "f"}, developer="dev_old").status == 200
    assert counters(stack.dynamodb, stack.usage_table)[("DEV#dev_old", "M#2026-11#api_calls")][0] == 5


def test_a_stamped_plan_rewritten_without_its_stamps_applies_within_a_minute(
    stack: Stack, freeze: Callable[[datetime], None]
) -> None:
    """Older code during a rolling deploy rewrites a plan but not its stamps: the stamp check
    still passes, so the container's copy is used until it is a minute old, then read again."""
    assert cli.main(["plans", "put", "pro", "--metric", "api_calls=100:hard"]) == 0  # stamped
    assert one(stack, "a").status == 200  # copies the plan
    stack.dynamodb.put_item(
        TableName=stack.accounts_table,
        Item={
            "pk": {"S": "PLAN#pro"}, "sk": {"S": "PLAN"}, "kind": {"S": "plan"}, "name": {"S": "pro"},
            "metrics": {"M": {"api_calls": {"M": {"limit": {"N": "1"}, "enforcement": {"S": "hard"}}}}},
            "revision": {"S": uuid.uuid4().hex},
        },
    )  # fmt: skip
    freeze(datetime(2026, 11, 25, 12, 0, 59, tzinfo=UTC))
    assert one(stack, "b").status == 200  # the copy, 59 s old, passes its stamp's check
    freeze(datetime(2026, 11, 25, 12, 1, 0, tzinfo=UTC))
    refused = one(stack, "c")  # a minute old: read again, checked on the item itself
    assert (refused.status, refused.json()["error"]["code"]) == (429, "limit_exceeded")
    assert month(stack, "api_calls") == (2, 2)
