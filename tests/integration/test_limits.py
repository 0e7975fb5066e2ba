"""Plans and limits against moto: hard limits refuse whole events and count nothing, soft limits
report, unlimited and unplanned metrics, billing-period rollover and backdating, plan changes on
the next request, entitlements and the per-minute rate report.

Plans are made the way an operator makes them (the CLI, `usage_meter_admin.cli.main`); the
assertions read what landed in DynamoDB as well as what the API answers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from usage_meter import jsonutil
from usage_meter.domain import accounts
from usage_meter.models.accounts import MetricLimit, Plan
from usage_meter_admin import cli
from usage_meter_local.invoke import Answer

from helpers import DEV_A, DEV_B, MADE_KEY, SERVICE, counters, minute_counters, naming, summed, table_items
from integration.conftest import Stack

Freeze = Callable[[datetime], None]
NOW = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)
NOW_TEXT = "2026-11-25T15:30:00.000Z"
CAPPED_SINCE = datetime(2026, 10, 1, tzinfo=UTC)
SECONDS_TO_DECEMBER = 5 * 86_400 + 8 * 3_600 + 30 * 60  # 2026-11-25T15:30Z -> 2026-12-01T00:00Z
NOVEMBER = {"periodStart": "2026-11-01T00:00:00Z", "periodEnd": "2026-12-01T00:00:00Z"}
DECEMBER = {"periodStart": "2026-12-01T00:00:00Z", "periodEnd": "2027-01-01T00:00:00Z"}
OVER_10 = {"code": "limit_exceeded", "message": "api_calls would pass its limit of 10 for 2026-11"}


def put_plan(name: str, *metrics: str, rpm: int | None = None) -> None:
    """`usage-meter plans put NAME --metric ... [--requests-per-minute N]`."""
    argv = ["plans", "put", name]
    for metric in metrics:
        argv += ["--metric", metric]
    if rpm is not None:
        argv += ["--requests-per-minute", str(rpm)]
    assert cli.main(argv) == 0


def set_plan(developer: str, plan: str) -> None:
    """`usage-meter plans set DEV PLAN`."""
    assert cli.main(["plans", "set", developer, plan]) == 0


@pytest.fixture
def capped(stack: Stack, freeze: Freeze) -> Stack:
    """dev_alice on "capped" since October 1: api_calls 10 hard, tokens 10 soft, storage_gb
    unlimited, 42/min (so October and November are both judged by it)."""
    freeze(CAPPED_SINCE)
    put_plan("capped", "api_calls=10:hard", "tokens=10:soft", "storage_gb=unlimited", rpm=42)
    set_plan("dev_alice", "capped")
    freeze(NOW)
    return stack


def event(
    quantity: Any = 1, metric: str = "api_calls", key: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"metric": metric, "quantity": quantity, **extra}
    if key is not None:
        body["idempotencyKey"] = key
    return body


def send(stack: Stack, *events: dict[str, Any], developer: str = "dev_alice") -> Answer:
    """One event as a single track (usage block, 429), several as a batch, as the provider's
    backend tracks them for `developer` (events naming another developer keep it)."""
    body = naming(developer, events[0] if len(events) == 1 else {"events": list(events)})
    return stack.track(jsonutil.dumps(body), developer=None)  # exact decimals on the wire


def statuses(answer: Answer) -> list[str]:
    return [r["status"] for r in answer.json()["results"]]


def month_counter(stack: Stack, month: str, metric: str = "api_calls", developer: str = "dev_alice") -> Any:
    return counters(stack.dynamodb, stack.usage_table).get((f"DEV#{developer}", f"M#{month}#{metric}"))


def day_counter(stack: Stack, day: str, metric: str = "api_calls", developer: str = "dev_alice") -> Any:
    return counters(stack.dynamodb, stack.usage_table).get((f"DEV#{developer}", f"D#{day}#{metric}"))


def record_keys(stack: Stack) -> list[str]:
    return sorted(r["pk"]["S"] for r in table_items(stack.dynamodb, stack.idempotency_table))


def usage_block(
    consumed: Any, limit: Any, remaining: Any, period: dict[str, str] = NOVEMBER
) -> dict[str, Any]:
    return {"metric": "api_calls", "consumed": consumed, "limit": limit, "remaining": remaining, **period}


def entitlement(stack: Stack, metric: str, *, auth: dict[str, Any] = DEV_A, **query: str) -> Answer:
    return stack.call("GET", f"/v1/entitlements/{metric}", auth=auth, query=query or None)


# ---- hard limits ------------------------------------------------------------------------------


def test_hard_limit_fills_exactly_then_refuses_with_429(capped: Stack) -> None:
    for n in range(10):
        answer = send(capped, event(key=f"k{n}"))
        assert answer.status == 200
        assert statuses(answer) == ["recorded"]
        assert answer.json()["usage"] == usage_block(n + 1, 10, 9 - n)

    refused = send(capped, event(key="k10"))

    assert refused.status == 429
    assert refused.headers["retry-after"] == str(SECONDS_TO_DECEMBER)
    assert refused.json() == {"error": OVER_10, "usage": usage_block(10, 10, 0)}
    # nothing of the refused event landed: counters, idempotency record, minute counter
    assert month_counter(capped, "2026-11") == (Decimal(10), 10)
    assert day_counter(capped, "2026-11-25") == (Decimal(10), 10)
    assert record_keys(capped) == sorted(f"dev_alice#k{n}" for n in range(10))
    assert minute_counters(capped.dynamodb, capped.usage_table) == {
        ("DEV#dev_alice", "R#2026-11-25T15:30#*"): 10
    }

    unkeyed = send(capped, event())
    assert unkeyed.status == 429
    assert unkeyed.headers["retry-after"] == str(SECONDS_TO_DECEMBER)
    assert unkeyed.json() == {"error": OVER_10, "usage": usage_block(10, 10, 0)}
    assert month_counter(capped, "2026-11") == (Decimal(10), 10)

    # a refusal is not remembered: the same key is a fresh attempt, refused again
    again = send(capped, event(key="k10"))
    assert again.status == 429
    assert record_keys(capped) == sorted(f"dev_alice#k{n}" for n in range(10))

    current = capped.current().json()
    assert current["metrics"]["api_calls"] == summed(
        {"consumed": 10, "limit": 10, "remaining": 0, "percentageUsed": 100}, 10, 1
    )
    assert current["totalRequests"] == 10


def test_retry_after_counts_the_seconds_to_the_period_end(capped: Stack, freeze: Freeze) -> None:
    send(capped, event(10))
    for moment, seconds in (
        (datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC), 1),
        (datetime(2026, 11, 30, 23, 59, 58, 500_000, tzinfo=UTC), 2),  # rounded up, never 0
        (datetime(2026, 11, 1, 0, 0, 5, tzinfo=UTC), 30 * 86_400 - 5),
    ):
        freeze(moment)
        refused = send(capped, event())
        assert refused.status == 429
        assert refused.headers["retry-after"] == str(seconds)


def test_quantity_larger_than_what_remains_is_refused_whole(capped: Stack) -> None:
    assert send(capped, event(7, key="seven")).json()["usage"] == usage_block(7, 10, 3)

    refused = send(capped, event(5, key="five"))

    assert refused.status == 429
    assert refused.json() == {"error": OVER_10, "usage": usage_block(7, 10, 3)}
    assert month_counter(capped, "2026-11") == (Decimal(7), 1)  # not 10: no partial fill
    assert record_keys(capped) == ["dev_alice#seven"]

    fits = send(capped, event(3, key="three"))
    assert fits.status == 200
    assert statuses(fits) == ["recorded"]
    assert fits.json()["usage"] == usage_block(10, 10, 0)
    assert month_counter(capped, "2026-11") == (Decimal(10), 2)
    assert record_keys(capped) == ["dev_alice#seven", "dev_alice#three"]


def test_exact_decimals_fill_a_hard_limit_to_the_last_nano(capped: Stack) -> None:
    assert send(capped, event(Decimal("9.999999998"))).status == 200
    assert send(capped, event(Decimal("0.000000003"))).status == 429
    assert send(capped, event(Decimal("0.000000002"))).json()["usage"] == usage_block(10, 10, 0)
    assert send(capped, event(Decimal("0.000000001"))).status == 429
    assert month_counter(capped, "2026-11") == (Decimal(10), 2)


def test_a_quantity_above_the_whole_limit_is_refused_on_an_empty_counter(capped: Stack) -> None:
    refused = send(capped, event(11))
    assert refused.status == 429
    assert refused.json() == {"error": OVER_10, "usage": usage_block(0, 10, 10)}
    assert month_counter(capped, "2026-11") is None


@pytest.mark.parametrize(
    ("limit", "prefill"), [(5, 0), (10, 5)], ids=["empty-counter", "known-after-refusal"]
)
def test_batch_admits_greedily_in_order(stack: Stack, freeze: Freeze, limit: int, prefill: int) -> None:
    """Room 5, events [3, 3, 2]: 3 fits, the next 3 would pass the limit (6 > 5), 2 fits (5)."""
    freeze(NOW)
    put_plan("room", f"api_calls={limit}:hard")
    set_plan("dev_alice", "room")
    if prefill:
        assert send(stack, event(prefill, key="prefill")).status == 200

    answer = send(
        stack, event(3, key="b0"), event(3, key="b1"), event(Decimal(2), key="b2"), event(7, "tokens")
    )

    assert answer.status == 200
    body = answer.json()
    over = {"code": "limit_exceeded", "message": f"api_calls would pass its limit of {limit} for 2026-11"}
    made = body["results"][3]["idempotencyKey"]  # sent without a key: the service made one
    assert MADE_KEY.fullmatch(made), made
    assert body["results"] == [
        {"index": 0, "status": "recorded", "idempotencyKey": "b0", "recordedAt": NOW_TEXT},
        {"index": 1, "status": "limit_exceeded", "idempotencyKey": "b1", "error": over},
        {"index": 2, "status": "recorded", "idempotencyKey": "b2", "recordedAt": NOW_TEXT},
        {"index": 3, "status": "recorded", "idempotencyKey": made, "recordedAt": NOW_TEXT},  # unlimited
    ]
    assert (body["recorded"], body["duplicates"], body["rejected"]) == (3, 0, 1)
    assert "usage" not in body
    assert month_counter(stack, "2026-11") == (Decimal(limit), 2 + (1 if prefill else 0))
    assert month_counter(stack, "2026-11", "tokens") == (Decimal(7), 1)
    expected_keys = ["dev_alice#b0", "dev_alice#b2", f"dev_alice#{made}"] + (
        ["dev_alice#prefill"] if prefill else []
    )
    assert record_keys(stack) == sorted(expected_keys)


def test_batch_refuses_in_batch_duplicates_of_a_refused_event_alike(capped: Stack) -> None:
    send(capped, event(9, key="nine"))
    answer = send(capped, event(2, key="x"), event(2, key="x"), event(1, key="y"))
    assert statuses(answer) == ["limit_exceeded", "limit_exceeded", "recorded"]
    assert month_counter(capped, "2026-11") == (Decimal(10), 2)
    assert record_keys(capped) == ["dev_alice#nine", "dev_alice#y"]


def test_room_proposed_for_a_reused_key_is_given_back(capped: Stack) -> None:
    """1 of 10 used; [k1 = 8 (k1 is taken by another payload), k0 = 7]: the first proposal gives
    k1's 8 the room, the commit finds k1 reused, and k0 (1 + 7 <= 10) is judged again and fits.
    Found by the property tests: k0 used to be refused for good."""
    assert send(capped, event(1, key="k1")).status == 200

    answer = send(capped, event(8, key="k1"), event(7, key="k0"))

    assert statuses(answer) == ["rejected", "recorded"]
    assert answer.json()["results"][0]["error"]["code"] == "idempotency_key_reused"
    assert month_counter(capped, "2026-11") == (Decimal(8), 2)
    assert record_keys(capped) == ["dev_alice#k0", "dev_alice#k1"]


def test_events_crowded_out_by_an_event_over_the_limit_are_judged_again(capped: Stack) -> None:
    """1 of 10 used; [9.5, 1]: proposed on an unknown counter, 9.5 fits and 1 does not; DynamoDB
    refuses 9.5 (1 + 9.5 > 10), and with the counter known 1 fits after all.
    Found by the property tests: both used to be refused."""
    assert send(capped, event(1)).status == 200

    answer = send(capped, event(Decimal("9.5")), event(1))

    assert statuses(answer) == ["limit_exceeded", "recorded"]
    assert month_counter(capped, "2026-11") == (Decimal(2), 2)


def test_full_batch_across_transactions_records_exactly_the_limit(capped: Stack) -> None:
    """100 keyed events need two transactions (100 records + counters > 100 items): the first
    fills the limit, the second learns the counter from its refusal."""
    answer = send(capped, *[event(key=f"n{n:03d}") for n in range(100)])

    assert statuses(answer) == ["recorded"] * 10 + ["limit_exceeded"] * 90
    assert (answer.json()["recorded"], answer.json()["rejected"]) == (10, 90)
    assert month_counter(capped, "2026-11") == (Decimal(10), 10)
    assert record_keys(capped) == [f"dev_alice#n{n:03d}" for n in range(10)]
    assert minute_counters(capped.dynamodb, capped.usage_table) == {
        ("DEV#dev_alice", "R#2026-11-25T15:30#*"): 10
    }


def test_batch_limits_are_per_developer_and_per_period(capped: Stack) -> None:
    """A service batch: alice's November and October limits and bob's plan are judged apart."""
    alice = {"developerId": "dev_alice"}
    bob = {"developerId": "dev_bob"}
    answer = send(
        capped,
        event(6, timestamp="2026-10-31T23:00:00Z", **alice),
        event(10, **alice),
        event(5, timestamp="2026-10-22T00:00:00Z", **alice),  # October: 6 + 5 > 10
        event(50, **bob),  # pro: 100,000
        event(4, timestamp="2026-10-23T00:00:00Z", **alice),  # October: 6 + 4 = 10
        event(1, **alice),  # November full
    )

    assert statuses(answer) == [
        "recorded",
        "recorded",
        "limit_exceeded",
        "recorded",
        "recorded",
        "limit_exceeded",
    ]
    assert answer.json()["results"][2]["error"] == {
        "code": "limit_exceeded",
        "message": "api_calls would pass its limit of 10 for 2026-10",
    }
    assert month_counter(capped, "2026-10") == (Decimal(10), 2)
    assert month_counter(capped, "2026-11") == (Decimal(10), 1)
    assert month_counter(capped, "2026-11", developer="dev_bob") == (Decimal(50), 1)


def test_duplicate_of_a_recorded_event_is_a_duplicate_when_the_limit_is_full(capped: Stack) -> None:
    originals = [send(capped, event(key=f"k{n}")).json()["results"][0] for n in range(10)]

    single = send(capped, event(key="k9"))

    assert single.status == 200
    assert single.json()["results"] == [originals[9] | {"status": "duplicate"}]
    assert single.json()["usage"] == usage_block(10, 10, 0)

    batch = send(capped, event(key="k0"), event(key="new"), event(key="k5"))
    assert batch.status == 200
    assert statuses(batch) == ["duplicate", "limit_exceeded", "duplicate"]
    assert (batch.json()["recorded"], batch.json()["duplicates"], batch.json()["rejected"]) == (0, 2, 1)

    # the key with another payload is a conflict, not a refusal for quota
    reused = send(capped, event(2, key="k3"))
    assert reused.status == 409
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert month_counter(capped, "2026-11") == (Decimal(10), 10)
    assert len(record_keys(capped)) == 10


# ---- soft, unlimited and unplanned metrics --------------------------------------------------------


def test_soft_limit_counts_past_the_limit_and_reports_it(capped: Stack) -> None:
    for quantity, consumed in ((8, 8), (7, 15)):
        answer = send(capped, event(quantity, "tokens"))
        assert answer.status == 200
        assert statuses(answer) == ["recorded"]
        assert answer.json()["usage"] == {
            "metric": "tokens",
            "consumed": consumed,
            "limit": 10,
            "remaining": max(0, 10 - consumed),
            **NOVEMBER,
        }

    usage = capped.current(metric="tokens")
    assert usage.json()["metrics"] == {
        "tokens": summed(
            {"consumed": 15, "limit": 10, "remaining": 0, "percentageUsed": 150}, 2, Decimal("7.5")
        )
    }
    assert '"percentageUsed":150,' in usage.body
    assert month_counter(capped, "2026-11", "tokens") == (Decimal(15), 2)


def test_unlimited_and_unplanned_metrics_are_counted_with_null_limits(capped: Stack) -> None:
    for metric in ("storage_gb", "emails"):
        answer = send(capped, event(Decimal("1000000000000"), metric))
        assert answer.status == 200
        assert answer.json()["usage"] == {
            "metric": metric,
            "consumed": 10**12,
            "limit": None,
            "remaining": None,
            **NOVEMBER,
        }
    assert send(capped, event(Decimal("0.5"), "emails")).status == 200

    body = capped.current().json()
    assert body["plan"] == "capped"
    assert body["metrics"] == {
        # plan metrics are listed even unused
        "api_calls": summed({"consumed": 0, "limit": 10, "remaining": 10, "percentageUsed": 0}, 0),
        "emails": summed(
            {
                "consumed": Decimal("1000000000000.5"),
                "limit": None,
                "remaining": None,
                "percentageUsed": None,
            },
            2,
            Decimal("500000000000.25"),
        ),
        "storage_gb": summed(
            {"consumed": 10**12, "limit": None, "remaining": None, "percentageUsed": None}, 1, 10**12
        ),
        "tokens": summed({"consumed": 0, "limit": 10, "remaining": 10, "percentageUsed": 0}, 0),
    }
    assert body["totalRequests"] == 3
    assert month_counter(capped, "2026-11", "emails") == (Decimal("1000000000000.5"), 2)


@pytest.mark.parametrize(
    ("limit", "consumed", "percentage"),
    [
        ("3", 1, "33.33"),
        ("3", 2, "66.67"),
        ("3", 3, "100"),
        ("800", 1, "0.13"),  # 0.125: half up
        ("1600", 1, "0.06"),  # 0.0625
        ("200000", 1, "0"),  # 0.0005 rounds to 0.00
        ("7", 1, "14.29"),
    ],
)
def test_percentage_used_has_two_decimals(
    stack: Stack, freeze: Freeze, limit: str, consumed: int, percentage: str
) -> None:
    freeze(NOW)
    put_plan("ratio", f"api_calls={limit}:hard")
    set_plan("dev_alice", "ratio")
    send(stack, *[event() for _ in range(consumed)])

    answer = stack.current(metric="api_calls")

    assert answer.json()["metrics"]["api_calls"]["percentageUsed"] == Decimal(percentage)
    assert f'"percentageUsed":{percentage},' in answer.body


def test_usage_of_a_day_reports_remaining_of_the_billing_period(capped: Stack, freeze: Freeze) -> None:
    send(capped, event(6, timestamp="2026-11-02T12:00:00Z"), event(1))
    day = capped.current(period="day", metric="api_calls").json()
    assert day["metrics"] == {
        "api_calls": summed({"consumed": 1, "limit": 10, "remaining": 3, "percentageUsed": 70}, 1, 1)
    }


# ---- billing periods ----------------------------------------------------------------------------


def test_limit_resets_when_the_period_rolls_over(capped: Stack, freeze: Freeze) -> None:
    freeze(datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC))
    assert send(capped, *[event() for _ in range(10)]).json()["recorded"] == 10
    refused = send(capped, event())
    assert refused.status == 429
    assert refused.headers["retry-after"] == "1"
    assert capped.current().json()["metrics"]["api_calls"]["remaining"] == 0

    freeze(datetime(2026, 12, 1, tzinfo=UTC))
    current = capped.current().json()
    assert current["period"] == {
        "key": "2026-12",
        "start": "2026-12-01T00:00:00Z",
        "end": "2027-01-01T00:00:00Z",
    }
    assert current["metrics"]["api_calls"] == summed(
        {"consumed": 0, "limit": 10, "remaining": 10, "percentageUsed": 0}, 0
    )
    assert entitlement(capped, "api_calls").json()["hasAccess"] is True

    accepted = send(capped, event())
    assert accepted.status == 200
    assert statuses(accepted) == ["recorded"]
    assert accepted.json()["usage"] == usage_block(1, 10, 9, DECEMBER)
    assert month_counter(capped, "2026-11") == (Decimal(10), 10)
    assert month_counter(capped, "2026-12") == (Decimal(1), 1)


def test_backdated_event_counts_against_its_own_period(capped: Stack, freeze: Freeze) -> None:
    freeze(datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    send(capped, event(10, key="full"))
    freeze(datetime(2026, 12, 5, 10, 0, tzinfo=UTC))
    assert capped.current().json()["metrics"]["api_calls"]["remaining"] == 10

    refused = send(capped, event(key="late", timestamp="2026-11-30T12:00:00Z"))

    # November is full even though December is empty; November has ended, so no Retry-After
    assert refused.status == 429
    assert "retry-after" not in refused.headers
    assert refused.json() == {"error": OVER_10, "usage": usage_block(10, 10, 0)}
    assert month_counter(capped, "2026-11") == (Decimal(10), 1)
    assert month_counter(capped, "2026-12") is None
    assert day_counter(capped, "2026-11-30") is None
    assert record_keys(capped) == ["dev_alice#full"]

    # in a batch: the late event refused, today's recorded
    batch = send(capped, event(timestamp="2026-11-29T00:00:00Z"), event(2))
    assert statuses(batch) == ["limit_exceeded", "recorded"]
    assert month_counter(capped, "2026-12") == (Decimal(2), 1)


def test_backdated_event_fits_its_own_period_when_this_one_is_full(capped: Stack, freeze: Freeze) -> None:
    freeze(datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    send(capped, event(4))
    freeze(datetime(2026, 12, 5, 10, 0, tzinfo=UTC))
    send(capped, event(10))
    assert send(capped, event()).status == 429

    late = send(capped, event(6, timestamp="2026-11-30T23:59:59Z"))

    assert late.status == 200
    assert statuses(late) == ["recorded"]
    assert late.json()["usage"] == usage_block(10, 10, 0)
    assert month_counter(capped, "2026-11") == (Decimal(10), 2)
    assert month_counter(capped, "2026-12") == (Decimal(10), 1)
    refused = send(capped, event(timestamp="2026-11-15T00:00:00Z"))
    assert refused.status == 429
    assert "retry-after" not in refused.headers


# ---- plan changes -------------------------------------------------------------------------------


def test_plan_change_applies_on_the_next_request(capped: Stack) -> None:
    put_plan("tiny", "api_calls=5:hard")
    put_plan("big", "api_calls=100:hard")
    assert send(capped, event(8)).status == 200

    set_plan("dev_alice", "tiny")
    refused = send(capped, event(key="after-downgrade"))
    assert refused.status == 429
    assert refused.json() == {
        "error": {"code": "limit_exceeded", "message": "api_calls would pass its limit of 5 for 2026-11"},
        "usage": usage_block(8, 5, 0),
    }
    assert capped.current().json()["metrics"] == {
        "api_calls": summed({"consumed": 8, "limit": 5, "remaining": 0, "percentageUsed": 160}, 1, 8)
    }
    assert entitlement(capped, "api_calls").json()["hasAccess"] is False

    set_plan("dev_alice", "big")
    accepted = send(capped, event(key="after-downgrade"))  # the refused key, retried
    assert accepted.status == 200
    assert statuses(accepted) == ["recorded"]
    assert accepted.json()["usage"] == usage_block(9, 100, 91)
    assert month_counter(capped, "2026-11") == (Decimal(9), 2)


def test_backdated_event_is_judged_by_the_plan_of_its_own_period(capped: Stack, freeze: Freeze) -> None:
    """An upgrade does not reopen a closed month: November was full on "capped" (10, hard); an
    upgrade on December 5 to a plan of 1,000 does not let an event stamped November 30 in."""
    put_plan("big", "api_calls=1000:hard")
    freeze(datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    assert send(capped, event(10)).status == 200
    freeze(datetime(2026, 12, 5, 10, 0, tzinfo=UTC))
    set_plan("dev_alice", "big")

    late = send(
        capped,
        event(500, key="jan-31-style", timestamp="2026-11-30T23:00:00Z"),
    )
    assert late.status == 429
    assert late.json() == {"error": OVER_10, "usage": usage_block(10, 10, 0)}
    assert month_counter(capped, "2026-11") == (Decimal(10), 1)
    held = record_keys(capped)
    assert len(held) == 1  # the November event's own (made) key: the refused one left no record
    assert "dev_alice#jan-31-style" not in held

    batch = send(
        capped,
        event(timestamp="2026-11-29T00:00:00Z"),
        event(500),
    )
    assert statuses(batch) == ["limit_exceeded", "recorded"]  # December is on "big"
    assert month_counter(capped, "2026-11") == (Decimal(10), 1)
    assert month_counter(capped, "2026-12") == (Decimal(500), 1)
    assert capped.current().json()["plan"] == "big"


def test_plan_history_is_kept_with_its_dates(capped: Stack, freeze: Freeze) -> None:
    freeze(datetime(2026, 12, 5, 10, 0, tzinfo=UTC))
    set_plan("dev_alice", "pro")
    developer = accounts.get_developer("dev_alice")
    assert [(a.plan, a.since) for a in developer.plan_history][-2:] == [
        ("capped", "2026-10-01T00:00:00.000Z"),
        ("pro", "2026-12-05T10:00:00.000Z"),
    ]
    assert developer.plan == "pro"
    assert developer.plan_at_end_of(datetime(2026, 12, 1, tzinfo=UTC)) == "capped"  # November
    assert developer.plan_at_end_of(datetime(2027, 1, 1, tzinfo=UTC)) == "pro"  # December


def test_plan_edit_with_plans_put_applies_on_the_next_request(capped: Stack) -> None:
    send(capped, event(10))
    assert send(capped, event()).status == 429

    put_plan("capped", "api_calls=12:hard", "tokens=10:soft")
    assert send(capped, event(2)).json()["usage"] == usage_block(12, 12, 0)
    assert send(capped, event()).status == 429

    put_plan("capped", "api_calls=12:soft")  # the same limit, now soft
    answer = send(capped, event(3))
    assert statuses(answer) == ["recorded"]
    assert answer.json()["usage"] == usage_block(15, 12, 0)

    put_plan("capped", "api_calls=unlimited")
    assert send(capped, event(5)).json()["usage"] == usage_block(20, None, None)

    put_plan("capped", "api_calls=20")  # hard by default, exactly used up
    assert send(capped, event()).status == 429
    assert month_counter(capped, "2026-11") == (Decimal(20), 4)


def test_plans_set_to_an_unknown_plan_changes_nothing(capped: Stack) -> None:
    send(capped, event(10))
    assert cli.main(["plans", "set", "dev_alice", "nope"]) == 1
    assert accounts.get_developer("dev_alice").plan == "capped"
    assert send(capped, event()).status == 429


def test_a_stored_plan_overrides_the_default_of_its_name(stack: Stack, freeze: Freeze) -> None:
    freeze(NOW)
    assert send(stack, event(2), developer="dev_bob").json()["usage"] == usage_block(2, 100000, 99998)

    put_plan("pro", "api_calls=3:hard", rpm=5)

    assert send(stack, event(), developer="dev_bob").json()["usage"] == usage_block(3, 3, 0)
    assert send(stack, event(), developer="dev_bob").status == 429
    body = stack.current(auth=DEV_B).json()
    assert body["metrics"] == {
        "api_calls": summed(
            {"consumed": 3, "limit": 3, "remaining": 0, "percentageUsed": 100}, 2, Decimal("1.5")
        )
    }
    assert body["rateLimit"] == {"requestsPerMinute": 5, "currentMinuteUsage": 2}


def test_plans_stored_with_put_plan_are_enforced(stack: Stack, freeze: Freeze) -> None:
    freeze(NOW)
    accounts.put_plan(
        Plan(name="direct", metrics={"api_calls": MetricLimit(limit=Decimal("2.5"), enforcement="hard")})
    )
    accounts.set_plan("dev_alice", "direct")
    assert send(stack, event(2)).status == 200
    refused = send(stack, event(1))
    assert refused.status == 429
    assert refused.json()["usage"] == usage_block(2, Decimal("2.5"), Decimal("0.5"))
    assert send(stack, event(Decimal("0.5"))).status == 200


def test_a_zero_hard_limit_refuses_everything(stack: Stack, freeze: Freeze) -> None:
    freeze(NOW)
    put_plan("blocked", "api_calls=0:hard")
    set_plan("dev_alice", "blocked")
    refused = send(stack, event(Decimal("0.000000001")))
    assert refused.status == 429
    assert refused.json()["usage"] == usage_block(0, 0, 0)
    assert stack.current().json()["metrics"]["api_calls"]["percentageUsed"] == 100
    assert entitlement(stack, "api_calls").json()["hasAccess"] is False
    assert month_counter(stack, "2026-11") is None
    # a plan without a request rate reports none
    assert stack.current().json()["rateLimit"] == {"requestsPerMinute": None, "currentMinuteUsage": 0}


# ---- GET /v1/entitlements/{metric} ------------------------------------------------------------


def access(
    metric: str, has: bool, consumed: Any, limit: Any, remaining: Any, enforcement: str | None
) -> dict[str, Any]:
    return {
        "metric": metric,
        "hasAccess": has,
        "consumed": consumed,
        "limit": limit,
        "remaining": remaining,
        "enforcement": enforcement,
        "resetsAt": "2026-12-01T00:00:00Z",
    }


def test_entitlements(capped: Stack) -> None:
    send(capped, event(4))
    answer = entitlement(capped, "api_calls")
    assert answer.status == 200
    assert answer.json() == access("api_calls", True, 4, 10, 6, "hard")

    send(capped, event(6))
    assert entitlement(capped, "api_calls").json() == access("api_calls", False, 10, 10, 0, "hard")

    send(capped, event(15, "tokens"))
    assert entitlement(capped, "tokens").json() == access("tokens", True, 15, 10, 0, "soft")

    send(capped, event(7, "storage_gb"))
    assert entitlement(capped, "storage_gb").json() == access("storage_gb", True, 7, None, None, "soft")

    assert entitlement(capped, "emails").json() == access("emails", False, 0, None, None, None)
    send(capped, event(3, "emails"))  # counted, but still outside the plan
    assert entitlement(capped, "emails").json() == access("emails", False, 3, None, None, None)


def test_entitlements_for_service_and_other_developers(capped: Stack) -> None:
    send(capped, event(10))

    service = entitlement(capped, "api_calls", auth=SERVICE, developerId="dev_alice")
    assert service.status == 200
    assert service.json() == access("api_calls", False, 10, 10, 0, "hard")
    bob = entitlement(capped, "api_calls", auth=SERVICE, developerId="dev_bob")
    assert bob.json() == access("api_calls", True, 0, 100000, 100000, "hard")  # bob is on pro
    own = entitlement(capped, "api_calls", developerId="dev_alice")
    assert own.json() == access("api_calls", False, 10, 10, 0, "hard")

    other = entitlement(capped, "api_calls", developerId="dev_bob")
    assert other.status == 403
    assert other.json()["error"]["code"] == "forbidden"
    missing = entitlement(capped, "api_calls", auth=SERVICE)
    assert missing.status == 422
    assert missing.json()["error"]["code"] == "developer_id_required"
    unknown = entitlement(capped, "api_calls", auth=SERVICE, developerId="dev_nobody")
    assert unknown.status == 404
    assert unknown.json()["error"]["code"] == "developer_not_found"


@pytest.mark.parametrize("metric", ["1calls", "api%20calls", "_x", "a" * 65])
def test_entitlements_refuse_a_bad_metric_name(capped: Stack, metric: str) -> None:
    answer = entitlement(capped, metric)
    assert answer.status == 422
    assert answer.json()["error"]["code"] == "validation_error"
    assert "metric" in answer.json()["error"]["message"]


# ---- rate report --------------------------------------------------------------------------------


def test_rate_limit_reports_events_recorded_in_the_current_minute(capped: Stack, freeze: Freeze) -> None:
    assert capped.current().json()["rateLimit"] == {"requestsPerMinute": 42, "currentMinuteUsage": 0}
    batch = [event(key=f"r{n}") for n in range(5)]
    assert send(capped, *batch).json()["recorded"] == 5
    assert capped.current().json()["rateLimit"] == {"requestsPerMinute": 42, "currentMinuteUsage": 5}

    assert statuses(send(capped, *batch)) == ["duplicate"] * 5
    assert send(capped, event(6)).status == 429  # refused: not recorded, not counted
    rejected = send(capped, event(1), {"metric": "api_calls", "quantity": -1})
    assert statuses(rejected) == ["recorded", "rejected"]
    assert capped.current().json()["rateLimit"] == {"requestsPerMinute": 42, "currentMinuteUsage": 6}

    freeze(NOW + timedelta(seconds=59, microseconds=999_000))
    assert capped.current().json()["rateLimit"]["currentMinuteUsage"] == 6
    freeze(NOW + timedelta(minutes=1))
    assert capped.current().json()["rateLimit"] == {"requestsPerMinute": 42, "currentMinuteUsage": 0}
    send(capped, event(), event(2, "tokens"))
    assert capped.current().json()["rateLimit"]["currentMinuteUsage"] == 2

    minutes = [i for i in table_items(capped.dynamodb, capped.usage_table) if i["sk"]["S"].startswith("R#")]
    assert {(i["pk"]["S"], i["sk"]["S"]): (i["events"]["N"], int(i["expiresAt"]["N"])) for i in minutes} == {
        ("DEV#dev_alice", "R#2026-11-25T15:30#*"): ("6", int((NOW + timedelta(hours=1)).timestamp())),
        ("DEV#dev_alice", "R#2026-11-25T15:31#*"): ("2", int((NOW + timedelta(minutes=61)).timestamp())),
    }
    # the month counters never carry an expiry: only minute counters are TTL-deleted
    assert all(
        "expiresAt" not in i for i in table_items(capped.dynamodb, capped.usage_table) if i not in minutes
    )


def test_rate_limit_counts_the_recording_minute_not_the_event_time(capped: Stack) -> None:
    send(capped, event(timestamp="2026-11-20T08:00:00Z"), event(timestamp="2026-11-25T15:29:00Z"))
    assert capped.current().json()["rateLimit"]["currentMinuteUsage"] == 2
    assert capped.current(auth=DEV_B).json()["rateLimit"] == {
        "requestsPerMinute": 1000,
        "currentMinuteUsage": 0,
    }
    assert minute_counters(capped.dynamodb, capped.usage_table) == {
        ("DEV#dev_alice", "R#2026-11-25T15:30#*"): 2
    }
