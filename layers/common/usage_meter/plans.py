"""Plans are data: defaults ship here and are stored in the accounts table, where they can be edited."""

from __future__ import annotations

from decimal import Decimal

from usage_meter.models import MetricLimit, Plan

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
