"""A plan's requestsPerMinute enforced on tracking (`rateEnforcement: hard`): the minute
counter's ceiling commits with the events, a refused single event is 429 `rate_limited` with
Retry-After (seconds to the next minute) and the rate headers, a batch refuses per item.

Plans are made as an operator makes them (`usage-meter plans put … --rate-enforcement hard`);
the assertions read the minute counter, the counters and the records that landed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from usage_meter_admin import cli

from helpers import counters, minute_counters, table_items
from integration.conftest import Stack

Freeze = Callable[[datetime], None]
NOW = datetime(2026, 11, 25, 15, 30, 20, tzinfo=UTC)  # 40 s left in the minute
ALICE = "dev_alice"
MINUTE = ("DEV#dev_alice", "R#2026-11-25T15:30#*")
RATE_LIMITED = {
    "code": "rate_limited",
    "message": "the plan allows 5 events a minute for dev_alice; retry in the next minute",
}


@pytest.fixture
def api(stack: Stack, freeze: Freeze) -> Stack:
    """dev_alice on "metered": api_calls unlimited, 5 events a minute, enforced."""
    freeze(NOW - timedelta(days=30))
    argv = ["plans", "put", "metered", "--metric", "api_calls=unlimited", "--requests-per-minute", "5"]
    assert cli.main([*argv, "--rate-enforcement", "hard"]) == 0
    assert cli.main(["plans", "set", ALICE, "metered"]) == 0
    freeze(NOW)
    return stack


def event(key: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"metric": "api_calls", "quantity": 1, **({"idempotencyKey": key} if key else {}), **fields}


def statuses(api: Stack, *events: dict[str, Any]) -> list[str]:
    answer = api.track({"events": list(events)})
    assert answer.status == 200, answer.body
    return [r["status"] for r in answer.json()["results"]]


def recorded(api: Stack) -> tuple[Decimal, int]:
    return counters(api.dynamodb, api.usage_table)[("DEV#dev_alice", "M#2026-11#api_calls")]


def test_the_rate_fills_exactly_then_a_single_event_is_429(api: Stack) -> None:
    assert statuses(api, event("a"), event("b"), event("c")) == ["recorded"] * 3
    assert api.track(event("d")).status == 200

    batch = api.track({"events": [event("e"), event("f"), event("g")]})
    assert [r["status"] for r in batch.json()["results"]] == ["recorded", "rejected", "rejected"]
    assert batch.json()["results"][1]["error"] == RATE_LIMITED
    assert batch.json()["rejected"] == 2

    refused = api.track(event("h"))
    assert refused.status == 429
    assert refused.json() == {"error": RATE_LIMITED}
    assert refused.headers["retry-after"] == "40"
    for name in ("RateLimit", "X-RateLimit"):
        assert (
            refused.headers[f"{name.lower()}-limit"],
            refused.headers[f"{name.lower()}-remaining"],
            refused.headers[f"{name.lower()}-reset"],
        ) == ("5", "0", "40")

    assert minute_counters(api.dynamodb, api.usage_table) == {MINUTE: 5}
    assert recorded(api) == (Decimal(5), 5)
    keys = {r["idempotencyKey"]["S"] for r in table_items(api.dynamodb, api.idempotency_table)}
    assert keys == {"a", "b", "c", "d", "e"}


def test_the_next_minute_starts_over(api: Stack, freeze: Freeze) -> None:
    assert statuses(api, *(event() for _ in range(7))) == ["recorded"] * 5 + ["rejected"] * 2
    freeze(NOW + timedelta(seconds=39, microseconds=999_000))
    assert api.track(event()).status == 429
    freeze(NOW + timedelta(seconds=40))
    assert statuses(api, *(event() for _ in range(6))) == ["recorded"] * 5 + ["rejected"]
    assert minute_counters(api.dynamodb, api.usage_table) == {
        MINUTE: 5,
        ("DEV#dev_alice", "R#2026-11-25T15:31#*"): 5,
    }
    assert recorded(api) == (Decimal(10), 10)


def test_a_duplicate_is_answered_as_such_when_the_rate_is_used_up(api: Stack) -> None:
    """A resend of a recorded event is its original outcome, never rate_limited, and takes no room."""
    assert statuses(api, *(event(f"k{i}") for i in range(5))) == ["recorded"] * 5
    assert statuses(api, event("k0"), event("k4"), event("new")) == ["duplicate", "duplicate", "rejected"]
    single = api.track(event("k2"))
    assert (single.status, single.json()["results"][0]["status"]) == (200, "duplicate")
    assert minute_counters(api.dynamodb, api.usage_table) == {MINUTE: 5}


def test_the_rate_is_per_developer(api: Stack) -> None:
    """dev_bob, on pro (1,000 a minute, reported only), is not held back by dev_alice's rate."""
    assert statuses(api, *(event() for _ in range(6))) == ["recorded"] * 5 + ["rejected"]
    answer = api.track({"events": [event() for _ in range(8)]}, developer="dev_bob")
    assert [r["status"] for r in answer.json()["results"]] == ["recorded"] * 8


def test_a_soft_rate_is_only_reported(api: Stack) -> None:
    assert (
        cli.main(["plans", "put", "metered", "--metric", "api_calls=unlimited", "--requests-per-minute", "5"])
        == 0
    )
    assert statuses(api, *(event() for _ in range(8))) == ["recorded"] * 8
    assert api.current(auth={"developerId": ALICE, "role": "developer"}).json()["rateLimit"] == {
        "requestsPerMinute": 5,
        "currentMinuteUsage": 8,
    }


def test_a_limit_is_judged_before_the_rate(api: Stack) -> None:
    """An event over a hard limit is limit_exceeded (waiting will not help), even when the
    rate is used up too."""
    argv = ["plans", "put", "metered", "--metric", "api_calls=3:hard", "--requests-per-minute", "5"]
    assert cli.main([*argv, "--rate-enforcement", "hard"]) == 0
    assert statuses(api, *(event() for _ in range(3))) == ["recorded"] * 3
    assert statuses(api, event(), event(metric="tokens"), event(metric="tokens")) == [
        "limit_exceeded",
        "recorded",
        "recorded",
    ]
    assert statuses(api, event(), event(metric="tokens")) == ["limit_exceeded", "rejected"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rate-enforcement", "hard"], "error: --rate-enforcement hard needs --requests-per-minute\n"),
        (["--requests-per-minute", "0"], "error: --requests-per-minute 0: it must be at least 1\n"),
    ],
)
def test_the_cli_refuses_a_rate_it_cannot_enforce(
    stack: Stack, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert cli.main(["plans", "put", "odd", *argv]) == 1
    assert capsys.readouterr().err == message
    assert not any(i["pk"]["S"] == "PLAN#odd" for i in table_items(stack.dynamodb, stack.accounts_table))


def test_plans_list_says_which_rates_are_enforced(api: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plans", "list"]) == 0
    assert "metered\t5/min (hard)\tapi_calls=unlimited (soft)" in capsys.readouterr().out.splitlines()
