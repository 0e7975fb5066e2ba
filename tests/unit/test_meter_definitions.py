"""Meter definitions and the plan catalogs, without AWS: what a definition may say, and that
each catalog file is consistent and says what its seed document says."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from usage_meter.domain.plans import DEFAULT_PLANS
from usage_meter.models.accounts import Meter, MeterDefinition
from usage_meter_admin import catalogs


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "calls"},
        {"name": "users", "aggregation": "unique_count", "unique_by": "user_id"},
        {"name": "seats", "aggregation": "level", "unit": "seats", "description": "Seats in use"},
        {"name": "tokens.in", "aggregation": "sum", "dimensions": ["model", "region", "tier"]},
    ],
)
def test_consistent_definitions(fields: dict[str, Any]) -> None:
    assert MeterDefinition.model_validate(fields).name == fields["name"]


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "users", "aggregation": "unique_count"},
        {"name": "calls", "aggregation": "count", "unique_by": "user_id"},
        {"name": "calls", "dimensions": ["a", "b", "c", "d"]},
        {"name": "calls", "dimensions": ["a", "a"]},
        {"name": "calls", "aggregation": "average"},
        {"name": "_calls"},
        {"name": "c" * 65},
        {"name": "calls", "unit": ""},
        {"name": "calls", "extra": 1},
    ],
)
def test_inconsistent_definitions_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        MeterDefinition.model_validate(fields)


def test_only_max_and_latest_take_no_limits() -> None:
    limitable = {
        aggregation: MeterDefinition(
            name="m", aggregation=aggregation, unique_by="u" if aggregation == "unique_count" else None
        ).limitable
        for aggregation in ("sum", "count", "max", "latest", "unique_count", "level")
    }
    assert limitable == {
        "sum": True,
        "count": True,
        "max": False,
        "latest": False,
        "unique_count": True,
        "level": True,
    }


def test_a_meter_keeps_its_definition() -> None:
    meter = Meter(name="seats", aggregation="level", unit="seats", created_at="2026-11-10T12:00:00.000Z")
    assert meter.definition == MeterDefinition(name="seats", aggregation="level", unit="seats")


@pytest.mark.parametrize("name", catalogs.CATALOGS)
def test_every_catalog_loads(name: catalogs.CatalogName) -> None:
    catalog = catalogs.load(name)
    assert catalog.name == name
    assert len({m.name for m in catalog.meters}) == len(catalog.meters)
    assert len({p.name for p in catalog.plans}) == len(catalog.plans)


def test_the_default_catalog_holds_the_default_plans() -> None:
    """The plans a fresh stack answers with (domain.plans) are the ones `plans seed` stores."""
    assert catalogs.load("default").plans == list(DEFAULT_PLANS)


def limits(name: catalogs.CatalogName) -> dict[str, dict[str, Decimal | None]]:
    return {
        plan.name: {metric: allowance.limit for metric, allowance in plan.metrics.items()}
        for plan in catalogs.load(name).plans
    }


def test_grantex_follows_its_plan_table() -> None:
    catalog = catalogs.load("grantex")
    assert {m.name: m.aggregation for m in catalog.meters} == {
        "agents": "level",
        "grants": "level",
        "policies": "level",
        "webhooks": "level",
        "audit_entries": "count",
        "token_exchanges": "count",
        "authorizations": "count",
        "verifications": "count",
    }
    assert limits("grantex") == {
        "free": {
            "agents": 500,
            "grants": 1_000,
            "policies": 50,
            "audit_entries": 20_000,
            "token_exchanges": 50_000,
            "authorizations": 50_000,
            "webhooks": 30,
        },
        "pro": {
            "agents": 5_000,
            "grants": 50_000,
            "policies": 500,
            "audit_entries": 1_000_000,
            "token_exchanges": 5_000_000,
            "authorizations": 5_000_000,
            "webhooks": 200,
        },
        "enterprise": dict.fromkeys(
            ("agents", "grants", "policies", "audit_entries", "token_exchanges", "authorizations", "webhooks")
        ),
    }


def test_glyphnet_follows_its_plan_table() -> None:
    catalog = catalogs.load("glyphnet")
    assert limits("glyphnet") == {
        "free": {"api_calls": 1_000},
        "starter": {"api_calls": 50_000},
        "professional": {"api_calls": 500_000},
        "enterprise": {"api_calls": 10_000_000},
    }
    assert {p.name: (p.requests_per_minute, p.rate_ceiling) for p in catalog.plans} == {
        "free": (60, 60),
        "starter": (200, 200),
        "professional": (500, 500),
        "enterprise": (2_000, 2_000),
    }
    (requests,) = (m for m in catalog.meters if m.name == "api_calls")
    assert (requests.aggregation, requests.dimensions) == ("count", ["endpoint"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"metrics": {"nothing": {"limit": 5}}},
            "plan p names nothing, which is not one of the catalog's meters",
        ),
        ({"metrics": {"peak": {"limit": 5}}}, "plan p limits peak, a max meter"),
    ],
)
def test_a_catalog_is_checked_whole(change: dict[str, Any], message: str) -> None:
    data = {
        "name": "default",
        "description": "d",
        "meters": [{"name": "peak", "aggregation": "max"}],
        "plans": [{"name": "p", **change}],
    }
    with pytest.raises(ValidationError, match=message):
        catalogs.Catalog.model_validate(data)


def test_a_catalog_may_leave_a_max_meter_unlimited() -> None:
    data = {
        "name": "default",
        "description": "d",
        "meters": [{"name": "peak", "aggregation": "max"}],
        "plans": [{"name": "p", "metrics": {"peak": {"limit": None}}}],
    }
    assert catalogs.Catalog.model_validate(data).plans[0].metrics["peak"].limit is None
