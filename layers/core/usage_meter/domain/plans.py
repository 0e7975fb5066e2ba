"""Plans are data: defaults ship here and are stored in the accounts table, where they can be edited."""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal

from usage_meter.models.accounts import MetricLimit, Plan
from usage_meter.store import accounts as account_store

DEFAULT_PLAN = "free"

DEFAULT_PLANS: tuple[Plan, ...] = (
    Plan(
        name="free",
        metrics={
            "api_calls": MetricLimit(limit=Decimal(1_000), enforcement="hard"),
            "tokens": MetricLimit(limit=Decimal(100_000), enforcement="hard"),
        },
        requests_per_minute=60,
    ),
    Plan(
        name="pro",
        metrics={
            "api_calls": MetricLimit(limit=Decimal(100_000), enforcement="hard"),
            "tokens": MetricLimit(limit=Decimal(10_000_000), enforcement="soft"),
        },
        requests_per_minute=1_000,
    ),
    Plan(
        name="enterprise",
        metrics={
            "api_calls": MetricLimit(limit=None, enforcement="soft"),
            "tokens": MetricLimit(limit=None, enforcement="soft"),
        },
        requests_per_minute=10_000,
    ),
)


def get_plan(name: str, stored: Callable[[str], Plan | None] = account_store.get_plan) -> Plan | None:
    """A stored plan (as `stored` reads it), else the default of that name (so a fresh stack
    has free/pro/enterprise)."""
    return stored(name) or next((p for p in DEFAULT_PLANS if p.name == name), None)


def metric_limit(plan: Plan | None, metric: str) -> MetricLimit | None:
    """The plan's allowance for a metric; None when the plan does not list it (unlimited)."""
    return plan.metrics.get(metric) if plan is not None else None


def remaining(limit: Decimal | None, consumed: Decimal) -> Decimal | None:
    """What is left of a limit (never negative; a soft limit may be passed)."""
    return None if limit is None else max(Decimal(0), limit - consumed)


def percentage_used(limit: Decimal | None, consumed: Decimal) -> Decimal | None:
    """consumed / limit in percent, 2 decimals, half up; a zero limit counts as fully used."""
    if limit is None:
        return None
    if limit == 0:
        return Decimal("100.00")
    return (consumed * 100 / limit).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
