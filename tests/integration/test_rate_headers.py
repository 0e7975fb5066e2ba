"""The rate headers of every developer-scoped answer: RateLimit-Limit/-Remaining/-Reset and
their X-RateLimit-* twins, from the plan's requestsPerMinute and the current minute counter."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from usage_meter.domain import accounts
from usage_meter.errors import Busy
from usage_meter.models.accounts import MetricLimit, Plan
from usage_meter.store import counters as counter_store
from usage_meter_local.invoke import Answer

from helpers import DEV_A, SERVICE, minute_counters
from integration.conftest import Stack

NOW = datetime(2026, 11, 25, 12, 0, 15, 500_000, tzinfo=UTC)  # 44.5 s left in the minute
ALICE = DEV_A["developerId"]  # on pro: 1,000 requests per minute
NAMES = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


@pytest.fixture
def api(stack: Stack, freeze: Callable[[datetime], None]) -> Stack:
    freeze(NOW)
    return stack


def rate(answer: Answer) -> tuple[int, int, int] | None:
    """(limit, remaining, reset) from the headers, checking the X- twins say the same."""
    assert answer.status == 200, answer.body
    plain = [answer.headers.get(name.lower()) for name in NAMES]
    twins = [answer.headers.get(f"x-{name.lower()}") for name in NAMES]
    assert plain == twins
    if plain == [None, None, None]:
        return None
    limit, remaining, reset = (int(value) for value in plain if value is not None)
    return limit, remaining, reset


def track(api: Stack, count: int, developer: str = ALICE) -> Answer:
    events = [{"metric": "emails", "quantity": 1, "developerId": developer} for _ in range(count)]
    return api.track({"events": events}, auth=SERVICE)


def reads(api: Stack, auth: dict[str, Any], developer: str = ALICE) -> dict[str, Answer]:
    query = {"developerId": developer}
    return {
        "current": api.call("GET", "/v1/usage", query=query, auth=auth),
        "history": api.call("GET", "/v1/usage/history", query=query, auth=auth),
        "entitlement": api.call("GET", "/v1/entitlements/api_calls", query=query, auth=auth),
    }


def test_every_developer_scoped_answer_carries_the_rate(api: Stack) -> None:
    for name, answer in reads(api, DEV_A).items():
        assert rate(answer) == (1000, 1000, 45), name
    assert rate(track(api, 3)) == (1000, 997, 45)  # after its own events
    for name, answer in reads(api, SERVICE).items():
        assert rate(answer) == (1000, 997, 45), name
    assert minute_counters(api.dynamodb, api.usage_table) == {(f"DEV#{ALICE}", "R#2026-11-25T12:00#*"): 3}


def test_current_usage_headers_agree_with_its_rate_limit_block(api: Stack) -> None:
    track(api, 2)
    answer = api.current()
    assert answer.json()["rateLimit"] == {"requestsPerMinute": 1000, "currentMinuteUsage": 2}
    assert rate(answer) == (1000, 998, 45)


def test_remaining_never_goes_below_zero(api: Stack) -> None:
    accounts.put_plan(Plan(name="tiny", requests_per_minute=2))
    accounts.create_developer("Tina", "tiny", "dev_tina")
    assert rate(track(api, 5, "dev_tina")) == (2, 0, 45)


@pytest.mark.parametrize(
    ("moment", "reset"),
    [
        (datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC), 60),
        (datetime(2026, 11, 25, 12, 0, 59, 999_999, tzinfo=UTC), 1),
        (datetime(2026, 11, 25, 23, 59, 30, tzinfo=UTC), 30),
    ],
)
def test_reset_is_the_seconds_to_the_next_minute(
    stack: Stack, freeze: Callable[[datetime], None], moment: datetime, reset: int
) -> None:
    freeze(moment)
    assert rate(stack.current()) == (1000, 1000, reset)


def test_a_plan_without_a_rate_sends_no_rate_headers(api: Stack) -> None:
    accounts.put_plan(Plan(name="unmetered"))
    accounts.create_developer("Una", "unmetered", "dev_una")
    assert rate(track(api, 1, "dev_una")) is None
    for name, answer in reads(api, SERVICE, "dev_una").items():
        assert rate(answer) is None, name


def test_a_batch_naming_several_developers_sends_no_rate_headers(api: Stack) -> None:
    events = [{"metric": "emails", "quantity": 1, "developerId": d} for d in (ALICE, "dev_bob")]
    answer = api.track({"events": events}, auth=SERVICE)
    assert answer.json()["recorded"] == 2
    assert rate(answer) is None


@pytest.mark.parametrize("developer", ["dev_nobody", ["dev_alice"], "x" * 2000])
def test_a_batch_naming_no_existing_developer_is_answered_without_them(api: Stack, developer: Any) -> None:
    answer = api.track(
        {"events": [{"metric": "emails", "quantity": 1, "developerId": developer}]}, auth=SERVICE
    )
    assert answer.json()["rejected"] == 1
    assert rate(answer) is None


def test_a_failed_rate_read_after_the_write_keeps_the_200(
    api: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events are recorded: a 503 now would make a keyless client send them again."""

    def throttled(*args: Any) -> None:
        raise Busy("DynamoDB is throttling; retry shortly")

    monkeypatch.setattr(counter_store, "minute_counter", throttled)
    answer = track(api, 2)
    assert answer.json()["recorded"] == 2
    assert rate(answer) is None


def refusal_rate(answer: Answer, status: int, code: str) -> tuple[int, int, int] | None:
    """`rate` of an error answer, once it is the refusal expected."""
    assert (answer.status, answer.json()["error"]["code"]) == (status, code), answer.body
    return rate(answer.model_copy(update={"status": 200}))


REFUSALS_OF_A_KNOWN_DEVELOPER = [
    (DEV_A, "GET", "/v1/usage", {"developerId": "dev_bob"}, 403, "forbidden"),
    (DEV_A, "GET", "/v1/usage", {"period": "day", "startDate": "2026-11-01"}, 422, "invalid_range"),
    (
        SERVICE,
        "GET",
        "/v1/usage/history",
        {"developerId": ALICE, "startDate": "2026-11-20", "endDate": "2026-11-01"},
        422,
        "invalid_range",
    ),
    (DEV_A, "GET", "/v1/entitlements/api_calls", {"developerId": "dev_bob"}, 403, "forbidden"),
    (SERVICE, "GET", "/v1/usage/events", {"developerId": ALICE, "cursor": "garbage"}, 400, "invalid_cursor"),
    (DEV_A, "GET", "/compat/grantex/v1/usage", {"developerId": "dev_bob"}, 403, "forbidden"),
    (DEV_A, "GET", "/compat/glyphnet/v1/usage", {"developerId": "dev_bob"}, 403, "forbidden"),
    (DEV_A, "GET", "/compat/billingos/v1/usage/metrics", {"customerId": "dev_bob"}, 403, "forbidden"),
]


@pytest.mark.parametrize(("auth", "method", "path", "query", "status", "code"), REFUSALS_OF_A_KNOWN_DEVELOPER)
def test_a_refusal_of_a_known_developer_carries_its_rate(
    api: Stack, auth: dict[str, Any], method: str, path: str, query: dict[str, str], status: int, code: str
) -> None:
    track(api, 3)
    answer = api.call(method, path, query=query, auth=auth)
    assert refusal_rate(answer, status, code) == (1000, 997, 45)


def test_a_refusal_by_role_reads_nothing_and_has_no_rate(api: Stack) -> None:
    """Tracking with a developer key is refused before any read: not even the rate is read."""
    body = {"customerId": ALICE, "featureKey": "api_calls", "quantity": 1, "idempotencyKey": "k1"}
    answer = api.call("POST", "/compat/billingos/v1/usage/track", body=body, auth=DEV_A)
    assert refusal_rate(answer, 403, "forbidden") is None
    answer = api.track({"metric": "emails", "quantity": 1}, auth=DEV_A)
    assert refusal_rate(answer, 403, "forbidden") is None


@pytest.mark.parametrize("every_function", [False, True], ids=["its-function", "every-function-loaded"])
def test_an_event_refused_over_a_hard_limit_carries_the_rate(api: Stack, every_function: bool) -> None:
    if every_function:  # as in the local gateway: the docs function includes every router too
        for route in api.api.routes:
            api.api.handler(route)
    accounts.put_plan(
        Plan(
            name="capped",
            metrics={"emails": MetricLimit(limit=Decimal(2), enforcement="hard")},
            requests_per_minute=50,
        )
    )
    accounts.create_developer("Cap", "capped", "dev_cap")
    assert rate(track(api, 2, "dev_cap")) == (50, 48, 45)
    answer = api.track({"metric": "emails", "quantity": 1, "developerId": "dev_cap"}, auth=SERVICE)
    assert refusal_rate(answer, 429, "limit_exceeded") == (50, 48, 45)
    assert answer.headers["retry-after"]  # until the period resets, as before


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [({"developerId": "dev_nobody"}, 404, "developer_not_found"), ({}, 422, "developer_id_required")],
)
def test_a_refusal_naming_no_existing_developer_has_no_rate(
    api: Stack, query: dict[str, str], status: int, code: str
) -> None:
    for path in ("/v1/usage", "/v1/usage/history", "/compat/grantex/v1/usage"):
        assert refusal_rate(api.call("GET", path, query=query, auth=SERVICE), status, code) is None, path


def test_a_failed_rate_read_keeps_the_refusal(api: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    def throttled(*args: Any) -> None:
        raise Busy("DynamoDB is throttling; retry shortly")

    monkeypatch.setattr(counter_store, "minute_counter", throttled)
    answer = api.call("GET", "/v1/usage", query={"developerId": "dev_bob"}, auth=DEV_A)
    assert refusal_rate(answer, 403, "forbidden") is None
