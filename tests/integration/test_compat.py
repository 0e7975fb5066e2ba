"""The compatible surfaces (Grantex, Glyphnet, BillingOS): the seeds' fields, casing and types,
built from the same reads and the same track pipeline as the main API, so that they refuse
what it refuses with the same codes, and are never a way around a limit, a role or a bound."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from usage_meter import jsonutil
from usage_meter.domain import accounts, meters
from usage_meter.models.accounts import MetricLimit, Plan
from usage_meter_admin import catalogs

from helpers import DEV_A, DEV_B, SERVICE, counters, iso, table_items
from integration.conftest import Stack

NOW = datetime(2026, 11, 25, 10, 20, 30, tzinfo=UTC)
ALICE = "dev_alice"
GRANTEX = "/compat/grantex/v1/usage"
GLYPHNET = "/compat/glyphnet/v1/usage"
BILLING = "/compat/billingos/v1"
RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


@pytest.fixture
def api(stack: Stack, freeze: Callable[[datetime], None]) -> Stack:
    freeze(NOW)
    return stack


def track(api: Stack, *events: dict[str, Any], developer: str = ALICE) -> None:
    """Record events through the main API (the provider's backend), each one accepted."""
    body = jsonutil.dumps({"events": [{"developerId": developer, **e} for e in events]})  # exact numbers
    answer = api.track(body, developer=None)
    assert answer.status == 200, answer.body
    assert answer.json()["recorded"] == len(events), answer.body


def on_day(days_ago: int, **event: Any) -> dict[str, Any]:
    return {**event, "timestamp": iso(NOW - timedelta(days=days_ago))}


def raw(answer: Any) -> Any:
    """The body as plain JSON (ints stay ints, a fraction is a float): what a client sees."""
    return json.loads(answer.body)


def error(answer: Any, status: int, code: str) -> dict[str, Any]:
    assert answer.status == status, answer.body
    body = answer.json()
    assert body["error"]["code"] == code, body
    found: dict[str, Any] = body["error"]
    return found


def rated_plan(name: str = "rated", **metrics: MetricLimit) -> None:
    """Put alice on a plan with a request rate, so that the answers carry the rate headers."""
    accounts.put_plan(Plan(name=name, metrics=metrics, requests_per_minute=100))
    accounts.set_plan(ALICE, name)


# ---- Grantex ---------------------------------------------------------------------------------


@pytest.fixture
def grantex(api: Stack) -> Stack:
    catalogs.seed("grantex")
    return api


def test_grantex_usage_has_the_documented_fields_as_integers(grantex: Stack) -> None:
    rated_plan()
    track(
        grantex,
        *[{"metric": "token_exchanges"}] * 3,
        *[{"metric": "authorizations"}] * 2,
        {"metric": "verifications"},
        {"metric": "agents", "quantity": 1},
        on_day(30, metric="token_exchanges"),  # October: another period
    )
    track(grantex, {"metric": "token_exchanges"}, developer="dev_bob")  # someone else's
    answer = grantex.call("GET", GRANTEX)
    assert answer.status == 200, answer.body
    body = raw(answer)
    assert body == {
        "developerId": ALICE,
        "period": "2026-11",
        "tokenExchanges": 3,
        "authorizations": 2,
        "verifications": 1,
        "totalRequests": 7,  # every event of the period, the agent's too
    }
    assert all(type(body[k]) is int for k in ("tokenExchanges", "authorizations", "verifications"))
    # the rate headers Grantex's SDK reads: 8 of alice's events were recorded this minute
    assert [answer.headers[f"x-{name}"] for name in RATE_HEADERS] == ["100", "92", "30"]
    assert [answer.headers[name] for name in RATE_HEADERS] == ["100", "92", "30"]


def test_grantex_usage_without_usage_is_zero(grantex: Stack) -> None:
    answer = grantex.call("GET", GRANTEX, auth=DEV_B)
    assert raw(answer) == {
        "developerId": "dev_bob",
        "period": "2026-11",
        "tokenExchanges": 0,
        "authorizations": 0,
        "verifications": 0,
        "totalRequests": 0,
    }
    assert "x-ratelimit-limit" not in answer.headers  # the grantex catalog's pro plan states no rate


def test_grantex_history_days_oldest_first(grantex: Stack) -> None:
    rated_plan()
    track(
        grantex,
        on_day(2, metric="authorizations"),
        on_day(2, metric="token_exchanges"),
        on_day(0, metric="verifications"),
        on_day(0, metric="verifications"),
        on_day(5, metric="authorizations"),  # before the 3 days asked
    )
    answer = grantex.call("GET", f"{GRANTEX}/history", query={"days": "3"})
    assert answer.status == 200, answer.body
    zero = {"tokenExchanges": 0, "authorizations": 0, "verifications": 0, "totalRequests": 0}
    assert raw(answer) == {
        "developerId": ALICE,
        "days": 3,
        "entries": [
            {"date": "2026-11-23", **zero, "tokenExchanges": 1, "authorizations": 1, "totalRequests": 2},
            {"date": "2026-11-24", **zero},
            {"date": "2026-11-25", **zero, "verifications": 2, "totalRequests": 2},
        ],
    }
    assert answer.headers["x-ratelimit-limit"] == "100"
    default = raw(grantex.call("GET", f"{GRANTEX}/history"))  # Grantex's SDK may leave days out
    assert (default["days"], len(default["entries"]), default["entries"][-1]["date"]) == (
        30,
        30,
        "2026-11-25",
    )


GRANTEX_HISTORY_REFUSALS = [
    ({"days": "0"}, 422, "validation_error"),
    ({"days": "367"}, 422, "validation_error"),
    ({"days": "seven"}, 422, "validation_error"),
    ({"developerId": "dev_bob"}, 403, "forbidden"),
]


def test_grantex_history_refuses_what_the_main_api_refuses(grantex: Stack) -> None:
    for query, status, code in GRANTEX_HISTORY_REFUSALS:
        error(grantex.call("GET", f"{GRANTEX}/history", query=query), status, code)
        main = grantex.call("GET", "/v1/usage/history", query=query)
        assert (main.status, main.json()["error"]["code"]) == (status, code)


def test_grantex_keys_and_roles(grantex: Stack) -> None:
    error(grantex.call("GET", GRANTEX, auth=None), 401, "unauthorized")
    error(grantex.call("GET", GRANTEX, auth=SERVICE), 422, "developer_id_required")
    error(
        grantex.call("GET", GRANTEX, auth=SERVICE, query={"developerId": "dev_nobody"}),
        404,
        "developer_not_found",
    )
    error(grantex.call("GET", GRANTEX, query={"developerId": "dev_bob"}), 403, "forbidden")
    track(grantex, {"metric": "authorizations"})
    served = raw(grantex.call("GET", GRANTEX, auth=SERVICE, query={"developerId": ALICE}))
    assert (served["developerId"], served["authorizations"]) == (ALICE, 1)


def test_grantex_through_the_authorizer_with_a_bearer_key(grantex: Stack) -> None:
    key = accounts.create_key(ALICE).key
    answer = grantex.api.call("GET", GRANTEX, headers={"Authorization": f"Bearer {key}"}, run_authorizer=True)
    assert (answer.status, raw(answer)["developerId"]) == (200, ALICE)
    refused = grantex.api.call(
        "GET", GRANTEX, headers={"Authorization": "Bearer gx_live_x"}, run_authorizer=True
    )
    error(refused, 401, "unauthorized")


# ---- Glyphnet --------------------------------------------------------------------------------


@pytest.fixture
def glyphnet(api: Stack) -> Stack:
    catalogs.seed("glyphnet")
    accounts.set_plan(ALICE, "professional")
    return api


def verification(days_ago: int, endpoint: str, claims: int, confidence: str) -> list[dict[str, Any]]:
    """What Glyphnet's backend records for one request: the request (by endpoint), the claims
    it verified and its confidence."""
    return [
        on_day(days_ago, metric="api_calls", metadata={"endpoint": endpoint}),
        on_day(days_ago, metric="verified_claims", quantity=claims),
        on_day(days_ago, metric="confidence", quantity=Decimal(confidence)),
    ]


def test_glyphnet_usage_has_the_documented_fields(glyphnet: Stack) -> None:
    track(
        glyphnet,
        *verification(1, "verify", 3, "0.9"),
        *verification(1, "verify", 2, "0.8"),
        *verification(0, "verify", 5, "0.95"),
        on_day(0, metric="api_calls", metadata={"endpoint": "harm_detect"}),
        on_day(40 - 15, metric="api_calls", metadata={"endpoint": "verify"}),  # Oct 31: not this month
    )
    track(glyphnet, {"metric": "api_calls", "metadata": {"endpoint": "verify"}}, developer="dev_bob")
    answer = glyphnet.call("GET", GLYPHNET, headers={"X-API-Key": "not read: the authorizer resolved it"})
    assert answer.status == 200, answer.body
    body = answer.json()
    zero_day = {"requests": 0, "verified_claims": 0, "avg_confidence": None}
    daily = [{"date": f"2026-11-{d:02d}", **zero_day} for d in range(1, 26)]
    daily[23] = {"date": "2026-11-24", "requests": 2, "verified_claims": 5, "avg_confidence": Decimal("0.85")}
    daily[24] = {"date": "2026-11-25", "requests": 2, "verified_claims": 5, "avg_confidence": Decimal("0.95")}
    assert body == {
        "organization": {"id": ALICE, "name": ALICE, "plan": "professional"},
        "period": {"start": "2026-11-01T00:00:00Z", "end": "2026-11-30T23:59:59Z"},
        "current_usage": 4,
        "monthly_limit": 500000,
        "remaining": 499996,
        "percentage_used": 0,
        "rate_limit": {"requests_per_minute": 500, "current_minute_usage": 11},
        "breakdown": {"verify": 3, "harm_detect": 1},
        "daily": daily,
    }
    assert list(body["breakdown"]) == ["verify", "harm_detect"]  # largest first
    assert [answer.headers[f"x-{name}"] for name in RATE_HEADERS] == ["500", "489", "30"]


def test_glyphnet_documented_example_reads_it(glyphnet: Stack) -> None:
    """The seed's own lines over the answer (its f-strings and check_usage_and_alert's fields)."""
    track(glyphnet, *[{"metric": "api_calls", "metadata": {"endpoint": "verify"}}] * 3)
    usage = raw(glyphnet.call("GET", GLYPHNET, query={"period": "month"}))
    assert f"Used: {usage['current_usage']:,} / {usage['monthly_limit']:,}" == "Used: 3 / 500,000"
    assert f"Remaining: {usage['remaining']:,}" == "Remaining: 499,997"
    assert f"{usage['percentage_used']:.1f}%" == "0.0%"


def test_glyphnet_plans_show_their_limits_and_rates(glyphnet: Stack) -> None:
    for plan, limit, rate in (
        ("free", 1000, 60),
        ("starter", 50000, 200),
        ("professional", 500000, 500),
        ("enterprise", 10000000, 2000),
    ):
        accounts.set_plan(ALICE, plan)
        body = raw(glyphnet.call("GET", GLYPHNET))
        assert (body["organization"]["plan"], body["monthly_limit"], body["remaining"]) == (
            plan,
            limit,
            limit,
        )
        assert body["rate_limit"] == {"requests_per_minute": rate, "current_minute_usage": 0}


def test_glyphnet_percentage_and_the_hard_limit_hold(glyphnet: Stack) -> None:
    accounts.put_plan(
        Plan(name="tiny", metrics={"api_calls": MetricLimit(limit=Decimal(10), enforcement="hard")})
    )
    accounts.set_plan(ALICE, "tiny")
    track(glyphnet, *[on_day(1, metric="api_calls", metadata={"endpoint": "verify"})] * 9)
    body = raw(glyphnet.call("GET", GLYPHNET))
    assert (body["current_usage"], body["remaining"], body["percentage_used"]) == (9, 1, 90)
    # a surface that only reads is no way around the limit: the 11th request is refused
    assert glyphnet.track({"metric": "api_calls"}).status == 200
    error(glyphnet.track({"metric": "api_calls"}), 429, "limit_exceeded")
    body = raw(glyphnet.call("GET", GLYPHNET))
    assert (body["current_usage"], body["remaining"], body["percentage_used"]) == (10, 0, 100)


def test_glyphnet_windows(glyphnet: Stack) -> None:
    track(
        glyphnet,
        on_day(0, metric="api_calls", metadata={"endpoint": "verify"}),
        on_day(3, metric="api_calls", metadata={"endpoint": "harm_detect"}),  # Sunday Nov 22
        on_day(8, metric="api_calls", metadata={"endpoint": "verify"}),
    )
    day = raw(glyphnet.call("GET", GLYPHNET, query={"period": "day"}))
    assert day["period"] == {"start": "2026-11-25T00:00:00Z", "end": "2026-11-25T23:59:59Z"}
    assert (day["current_usage"], day["breakdown"], len(day["daily"])) == (1, {"verify": 1}, 1)
    assert day["remaining"] == 500000 - 3  # limits describe the billing month
    week = raw(glyphnet.call("GET", GLYPHNET, query={"period": "week"}))  # Monday Nov 23 to today
    assert week["period"] == {"start": "2026-11-23T00:00:00Z", "end": "2026-11-29T23:59:59Z"}
    assert [d["date"] for d in week["daily"]] == ["2026-11-23", "2026-11-24", "2026-11-25"]
    ranged = raw(glyphnet.call("GET", GLYPHNET, query={"start_date": "2026-11-17", "end_date": "2026-11-22"}))
    assert ranged["period"] == {"start": "2026-11-17T00:00:00Z", "end": "2026-11-22T23:59:59Z"}
    assert (ranged["current_usage"], ranged["breakdown"]) == (2, {"harm_detect": 1, "verify": 1})
    assert [d["requests"] for d in ranged["daily"]] == [1, 0, 0, 0, 0, 1]


GLYPHNET_REFUSALS = [
    ({"period": "year"}, "validation_error"),
    ({"start_date": "yesterday"}, "validation_error"),
    ({"period": "day", "start_date": "2026-11-01"}, "invalid_range"),
    ({"start_date": "2026-11-20", "end_date": "2026-11-10"}, "invalid_range"),
    ({"start_date": "2025-01-01", "end_date": "2026-11-10"}, "invalid_range"),  # over 366 days
    ({"end_date": "2026-11-10"}, "invalid_range"),
]


def test_glyphnet_refuses_bad_windows_as_the_main_api(glyphnet: Stack) -> None:
    for query, code in GLYPHNET_REFUSALS:
        error(glyphnet.call("GET", GLYPHNET, query=query), 422, code)
        main = {{"start_date": "startDate", "end_date": "endDate"}.get(k, k): v for k, v in query.items()}
        assert glyphnet.call("GET", "/v1/usage", query=main).json()["error"]["code"] == code


def test_glyphnet_with_an_x_api_key_through_the_authorizer(glyphnet: Stack) -> None:
    key = accounts.create_key(ALICE).key
    answer = glyphnet.api.call("GET", GLYPHNET, headers={"X-API-Key": key}, run_authorizer=True)
    assert (answer.status, answer.json()["organization"]["id"]) == (200, ALICE)
    error(glyphnet.api.call("GET", GLYPHNET, run_authorizer=True), 401, "unauthorized")


def test_glyphnet_requests_meter_without_dimensions(api: Stack) -> None:
    """A stack whose api_calls is a plain summed metric: no breakdown, the rest the same."""
    track(api, {"metric": "api_calls", "quantity": 7, "metadata": {"endpoint": "verify"}})
    body = raw(api.call("GET", GLYPHNET))
    assert (body["current_usage"], body["monthly_limit"], body["breakdown"]) == (7, 100000, {})


# ---- BillingOS -------------------------------------------------------------------------------


def billing_track(api: Stack, body: dict[str, Any], auth: dict[str, Any] | None = SERVICE) -> Any:
    return api.call("POST", f"{BILLING}/usage/track", body=body, auth=auth)


def usage_counters(api: Stack) -> dict[tuple[str, str], tuple[Decimal, int]]:
    return counters(api.dynamodb, api.usage_table)


def test_billing_track_answers_the_documented_fields_once_per_key(api: Stack) -> None:
    rated_plan("rated", api_calls=MetricLimit(limit=Decimal(1000), enforcement="hard"))
    body = {"customerId": ALICE, "featureKey": "api_calls", "quantity": 1, "idempotencyKey": "api-call-r1"}
    answer = billing_track(api, body)
    assert answer.status == 200, answer.body
    expected = {
        "success": True,
        "feature_key": "api_calls",
        "quantity": 1,
        "recorded_at": iso(NOW),
        "usage": {
            "consumed_units": 1,
            "limit_units": 1000,
            "remaining_units": 999,
            "period_start": "2026-11-01T00:00:00Z",
            "period_end": "2026-12-01T00:00:00Z",
        },
    }
    assert raw(answer) == expected
    assert [answer.headers[f"x-{name}"] for name in RATE_HEADERS] == ["100", "99", "30"]
    again = billing_track(api, body)  # a retry: the same answer, counted once
    assert (again.status, raw(again)) == (200, expected)
    assert usage_counters(api) == {
        ("DEV#dev_alice", "D#2026-11-25#api_calls"): (Decimal(1), 1),
        ("DEV#dev_alice", "M#2026-11#api_calls"): (Decimal(1), 1),
    }
    # the key is the same event's for the main API too
    main = api.track({"metric": "api_calls", "quantity": 1, "idempotencyKey": "api-call-r1"})
    assert main.json()["results"][0]["status"] == "duplicate"
    error(billing_track(api, {**body, "quantity": 2}), 409, "idempotency_key_reused")


def test_billing_track_keeps_metadata_and_fractions(api: Stack) -> None:
    body = {"customerId": ALICE, "featureKey": "tokens", "quantity": 12.5, "metadata": {"model": "m1"}}
    answer = billing_track(api, body)
    assert answer.status == 200, answer.body
    assert answer.json()["quantity"] == Decimal("12.5")
    assert answer.json()["usage"]["consumed_units"] == Decimal("12.5")
    (record,) = table_items(api.dynamodb, api.idempotency_table)
    assert record["metadata"] == {"S": '{"model":"m1"}'}


BILLING_TRACK_REFUSALS = [
    ({"quantity": -1}, 422, "quantity_not_positive"),
    ({"quantity": 0}, 422, "validation_error"),
    ({"quantity": "1"}, 422, "validation_error"),
    ({"quantity": None}, 422, "validation_error"),
    ({"featureKey": "not a key"}, 422, "validation_error"),
    ({"customerId": None}, 422, "validation_error"),
    ({"customerId": "dev_nobody"}, 404, "developer_not_found"),
    ({"metadata": {"blob": "x" * 3000}}, 422, "validation_error"),
    ({"idempotencyKey": ""}, 422, "validation_error"),
    ({"unknown": 1}, 422, "validation_error"),
    ({"quantity": 1e13}, 422, "validation_error"),
]


def test_billing_track_refuses_bad_input_and_counts_nothing(api: Stack) -> None:
    for body, status, code in BILLING_TRACK_REFUSALS:
        sent = {"customerId": ALICE, "featureKey": "api_calls", "quantity": 1, **body}
        error(billing_track(api, {k: v for k, v in sent.items() if v is not None}), status, code)
    assert usage_counters(api) == {}
    assert table_items(api.dynamodb, api.idempotency_table) == []


def test_billing_track_is_for_service_keys(api: Stack) -> None:
    body = {"customerId": ALICE, "featureKey": "api_calls", "quantity": 1}
    error(billing_track(api, body, auth=DEV_A), 403, "forbidden")
    error(billing_track(api, body, auth=None), 401, "unauthorized")
    assert usage_counters(api) == {}


def test_billing_track_never_lowers_a_level(api: Stack) -> None:
    catalogs.seed("grantex")
    body = {"customerId": ALICE, "featureKey": "agents", "quantity": 1}
    assert billing_track(api, body).status == 200
    error(billing_track(api, {**body, "quantity": -1}), 422, "quantity_not_positive")
    assert api.track({"metric": "agents", "quantity": -1}).status == 200  # the main API lowers it


def test_billing_track_holds_the_hard_limit_and_the_rate(api: Stack) -> None:
    accounts.put_plan(
        Plan(
            name="tight",
            metrics={"api_calls": MetricLimit(limit=Decimal(2), enforcement="hard")},
            requests_per_minute=3,
            rate_enforcement="hard",
        )
    )
    accounts.set_plan(ALICE, "tight")
    body = {"customerId": ALICE, "featureKey": "api_calls", "quantity": 1}
    assert [billing_track(api, body).status for _ in range(2)] == [200, 200]
    over = billing_track(api, body)
    assert error(over, 429, "limit_exceeded")
    assert over.json()["usage"] == {
        "consumed_units": 2,
        "limit_units": 2,
        "remaining_units": 0,
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
    }
    assert over.headers["retry-after"] == str(int((datetime(2026, 12, 1, tzinfo=UTC) - NOW).total_seconds()))
    assert billing_track(api, {**body, "featureKey": "tokens"}).status == 200  # the minute's third
    limited = billing_track(api, {**body, "featureKey": "tokens"})
    error(limited, 429, "rate_limited")
    assert (limited.headers["retry-after"], limited.headers["x-ratelimit-remaining"]) == ("30", "0")
    assert usage_counters(api)[("DEV#dev_alice", "M#2026-11#api_calls")] == (Decimal(2), 2)
    assert usage_counters(api)[("DEV#dev_alice", "M#2026-11#tokens")] == (Decimal(1), 1)


def test_billing_metrics_lists_each_feature(api: Stack) -> None:
    meters.create(
        meters.definition(name="authorizations", aggregation="count", description="Authorization requests")
    )
    track(api, {"metric": "api_calls", "quantity": 40}, {"metric": "authorizations"})
    answer = api.call("GET", f"{BILLING}/usage/metrics", query={"customerId": ALICE}, auth=SERVICE)
    assert answer.status == 200, answer.body
    period = {
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
        "resets_in_days": 6,
    }
    assert raw(answer) == {
        "metrics": [
            {
                "feature_key": "api_calls",
                "feature_title": "api_calls",
                "product_name": "pro",
                "consumed": 40,
                "limit": 100000,
                "remaining": 99960,
                "percentage_used": 0.04,
                **period,
            },
            {
                "feature_key": "authorizations",
                "feature_title": "Authorization requests",
                "product_name": "pro",
                "consumed": 1,
                "limit": None,
                "remaining": None,
                "percentage_used": None,
                **period,
            },
            {
                "feature_key": "tokens",
                "feature_title": "tokens",
                "product_name": "pro",
                "consumed": 0,
                "limit": 10000000,
                "remaining": 10000000,
                "percentage_used": 0,
                **period,
            },
        ],
        "customer_id": ALICE,
    }
    only = raw(api.call("GET", f"{BILLING}/usage/metrics", query={"featureKey": "api_calls"}))  # alice's key
    assert [(m["feature_key"], m["consumed"]) for m in only["metrics"]] == [("api_calls", 40)]
    assert only["customer_id"] == ALICE


BILLING_READ_REFUSALS: list[tuple[dict[str, Any] | None, dict[str, str], int, str]] = [
    (DEV_A, {"customerId": "dev_bob"}, 403, "forbidden"),
    (SERVICE, {}, 422, "developer_id_required"),
    (SERVICE, {"customerId": "dev_nobody"}, 404, "developer_not_found"),
    (DEV_A, {"featureKey": "bad key"}, 422, "validation_error"),
    (None, {}, 401, "unauthorized"),
]


def test_billing_reads_refuse_what_the_main_api_refuses(api: Stack) -> None:
    for auth, query, status, code in BILLING_READ_REFUSALS:
        error(api.call("GET", f"{BILLING}/usage/metrics", query=query, auth=auth), status, code)
        check = {"featureKey": "api_calls", **query}
        error(api.call("GET", f"{BILLING}/entitlements/check", query=check, auth=auth), status, code)


def test_billing_entitlement_check_follows_the_hard_limit(api: Stack) -> None:
    rated_plan("rated", api_calls=MetricLimit(limit=Decimal(2), enforcement="hard"))

    def check(feature: str = "api_calls") -> Any:
        return api.call("GET", f"{BILLING}/entitlements/check", query={"featureKey": feature})

    first = check()
    assert raw(first) == {
        "customer_id": ALICE,
        "feature_key": "api_calls",
        "has_access": True,
        "usage": 0,
        "limit": 2,
        "remaining": 2,
    }
    assert first.headers["x-ratelimit-limit"] == "100"
    track(api, {"metric": "api_calls", "quantity": 2})
    assert raw(check()) | {"has_access": False, "usage": 2, "remaining": 0} == raw(check())
    assert raw(check("tokens"))["has_access"] is False  # not in the plan
    error(api.call("GET", f"{BILLING}/entitlements/check"), 422, "validation_error")  # featureKey missing
