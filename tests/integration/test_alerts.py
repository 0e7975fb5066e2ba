"""Alerts from what the track path and the rollup write: a refusal flag once per period, crossings
claimed once per threshold from the counters' old and new images, usage.period.closed once."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from usage_meter.domain import accounts, alerts, rollup
from usage_meter.models.accounts import MetricLimit, Plan
from usage_meter.models.records import RollupRequest
from usage_meter.store import accounts as account_store
from usage_meter.store import dynamodb as store_db
from usage_meter.store.dynamodb import from_av
from usage_meter_local.outbox import EVENTS_NAME
from usage_meter_local.outbox import environment as outbox_environment

from helpers import table_items
from integration.conftest import Stack

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.fixture
def bus(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, freeze: Callable[[datetime], None]
) -> Path:
    for name, value in outbox_environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    store_db.reset()
    freeze(NOW)
    account_store.put_plan(
        Plan(
            name="small",
            metrics={
                "api_calls": MetricLimit(limit=Decimal(100), enforcement="hard"),
                "tokens": MetricLimit(limit=Decimal(1000), enforcement="soft", alerts=[50]),
                "quiet": MetricLimit(limit=Decimal(10), enforcement="soft", alerts=[]),
            },
        )
    )
    accounts.create_developer("dev_small", "small", "dev_small")
    return tmp_path / EVENTS_NAME


def _items(stack: Stack, prefix: str) -> dict[str, dict[str, Any]]:
    return {
        i["sk"]["S"]: {k: from_av(v) for k, v in i.items()}
        for i in table_items(stack.dynamodb, stack.usage_table)
        if i["sk"]["S"].startswith(prefix)
    }


def _published(bus: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in bus.read_text().splitlines()] if bus.exists() else []


def _stream(stack: Stack, before: dict[str, Any]) -> int:
    """What the stream delivers for the month and level counters that changed since `before`."""
    lookup = alerts.Lookup()
    raised = 0
    for sk, new in _items(stack, ("M#", "L#")).items():  # type: ignore[arg-type]
        if new != before.get(sk):
            raised += alerts.on_change(sk, before.get(sk, {}), new, lookup)
    return raised


def test_first_hard_limit_refusal_is_flagged_once_per_period(stack: Stack, bus: Path) -> None:
    assert stack.track({"metric": "api_calls", "quantity": 100}, developer="dev_small").status == 200
    for _ in range(3):
        assert stack.track({"metric": "api_calls", "quantity": 1}, developer="dev_small").status == 429
    assert stack.track({"metric": "tokens", "quantity": 5000}, developer="dev_small").status == 200  # soft
    (flag,) = _items(stack, "X#").values()
    assert (flag["sk"], flag["metric"], flag["limit"]) == ("X#2026-11#api_calls", "api_calls", "100")
    assert alerts.on_change(flag["sk"], {}, flag, alerts.Lookup())
    assert not alerts.on_change(flag["sk"], {}, flag, alerts.Lookup())  # the record again
    assert [(e["detail-type"], e["detail"]["data"]["metric"]) for e in _published(bus)] == [
        ("usage.limit.reached", "api_calls")
    ]


def test_crossings_are_claimed_once_and_published_with_their_figures(stack: Stack, bus: Path) -> None:
    before: dict[str, Any] = {}
    steps = [(70, "api_calls"), (25, "api_calls"), (600, "tokens"), (9, "quiet"), (5, "api_calls")]
    for quantity, metric in steps:
        assert stack.track({"metric": metric, "quantity": quantity}, developer="dev_small").status == 200
        _stream(stack, before)
        _stream(stack, before)  # a duplicate stream batch
        before = _items(stack, ("M#", "L#"))  # type: ignore[arg-type]
    published = [e["detail"] for e in _published(bus)]
    assert [(e["data"]["metric"], e["data"]["threshold"], e["data"]["consumed"]) for e in published] == [
        ("api_calls", 80, 95),  # 70 -> 95 crosses 80 and 90 at once
        ("api_calls", 90, 95),
        ("tokens", 50, 600),  # the plan's own threshold
        ("api_calls", 100, 100),
    ]  # "quiet" has alerts switched off
    assert {e["type"] for e in published} == {"usage.threshold.reached"}
    assert len({e["id"] for e in published}) == 4
    claims = _items(stack, "A#")
    assert sorted(claims) == [
        "A#2026-11#api_calls#100",
        "A#2026-11#api_calls#80",
        "A#2026-11#api_calls#90",
        "A#2026-11#tokens#50",
    ]
    assert {c["state"] for c in claims.values()} == {"published"}
    assert all(c["expiresAt"] > NOW.timestamp() + 36 * 86400 for c in claims.values())


def test_a_claim_whose_publish_failed_is_published_again_with_the_same_id(
    stack: Stack, bus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert stack.track({"metric": "api_calls", "quantity": 85}, developer="dev_small").status == 200
    failing = pytest.MonkeyPatch()
    failing.setattr(alerts.outbox, "put_event", lambda _e: (_ for _ in ()).throw(RuntimeError("bus down")))
    with pytest.raises(RuntimeError):
        _stream(stack, {})
    failing.undo()
    assert {c["state"] for c in _items(stack, "A#").values()} == {"pending"}
    assert _stream(stack, {}) == 1  # the retried batch
    assert _stream(stack, {}) == 0
    (event,) = [e["detail"] for e in _published(bus)]
    assert event["id"] == alerts.event_id("dev_small", "A#2026-11#api_calls#80")


def test_rollup_closes_a_month_once(stack: Stack, bus: Path, freeze: Callable[[datetime], None]) -> None:
    late = {"metric": "api_calls", "quantity": 3, "timestamp": "2026-10-30T08:00:00Z"}
    assert stack.track(late, developer="dev_small").status == 200
    rollup.run(RollupRequest())
    rollup.run(RollupRequest())
    closed = [e["detail"] for e in _published(bus) if e["detail-type"] == "usage.period.closed"]
    assert [(e["data"]["developerId"], e["data"]["period"], e["data"]["metrics"]) for e in closed] == [
        ("dev_small", "2026-10", {"api_calls": 3})
    ]


def test_a_level_alerts_on_its_ceiling_in_the_month_it_crosses(stack: Stack, bus: Path) -> None:
    from usage_meter.domain import meters

    meters.create(meters.definition(name="seats", aggregation="level"))
    account_store.put_plan(
        Plan(name="seated", metrics={"seats": MetricLimit(limit=Decimal(10), enforcement="hard")})
    )
    accounts.create_developer("dev_seated", "seated", "dev_seated")
    before: dict[str, Any] = {}
    for change in (7, 2, -5, 6):  # 7; 9 crosses 80 and 90; 4; 10 crosses 100 (80 and 90: once a month)
        assert stack.track({"metric": "seats", "quantity": change}, developer="dev_seated").status == 200
        _stream(stack, before)
        before = _items(stack, ("M#", "L#"))  # type: ignore[arg-type]
    published = [e["detail"]["data"] for e in _published(bus)]
    assert [(d["metric"], d["period"], d["threshold"], d["consumed"]) for d in published] == [
        ("seats", "2026-11", 80, 9),
        ("seats", "2026-11", 90, 9),
        ("seats", "2026-11", 100, 10),
    ]


def test_a_cancellation_is_announced_once_on_the_bus(stack: Stack, bus: Path) -> None:
    from helpers import SERVICE

    event = {"metric": "api_calls", "quantity": 3, "idempotencyKey": "to-cancel"}
    assert stack.track(event, developer="dev_small").status == 200
    cancel = {"developerId": "dev_small", "idempotencyKey": "to-cancel", "reason": "sent twice"}
    for status in ("cancelled", "already_cancelled"):
        answer = stack.call("POST", "/v1/usage/events/cancel", body=cancel, auth=SERVICE)
        assert (answer.status, answer.json()["status"]) == (200, status), answer.body
    (announced,) = [e["detail"] for e in _published(bus)]
    assert announced["type"] == "usage.event.cancelled"
    assert (announced["data"]["idempotencyKey"], announced["data"]["revision"]) == ("to-cancel", 1)


def test_a_sharded_meter_alerts_on_the_total_of_its_shards(stack: Stack, bus: Path) -> None:
    from usage_meter.domain import meters

    meters.create(meters.definition(name="hot", aggregation="sum", shards=4))
    account_store.put_plan(Plan(name="hot-plan", metrics={"hot": MetricLimit(limit=Decimal(100))}))
    accounts.create_developer("dev_hot", "hot-plan", "dev_hot")
    events = [{"metric": "hot", "quantity": 17, "idempotencyKey": f"k{i}"} for i in range(5)]  # 85
    for event in events:  # single events: each transaction on the shard its key picks
        assert stack.track(event, developer="dev_hot").status == 200
    shards = [sk for sk in _items(stack, "M#") if sk.startswith("M#2026-11#hot")]
    assert len(shards) > 1  # no shard alone reaches 80
    _stream(stack, {})
    _stream(stack, {})
    published = [e["detail"]["data"] for e in _published(bus)]
    assert [(d["metric"], d["threshold"], d["consumed"]) for d in published] == [("hot", 80, 85)]
