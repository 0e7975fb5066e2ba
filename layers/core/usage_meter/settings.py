"""Runtime settings: every environment variable the package reads, read here and nowhere else.

The template sets them on every function. A missing table name fails the first call (the
functions make it at cold start) with the variable's name, instead of silently using a
default name that exists nowhere.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from usage_meter.models.wire import METRIC_PATTERN

MAX_KEY_CACHE_SECONDS = 60.0
DEFAULT_DIMENSION_CARDINALITY = 1000
_TABLE_VARIABLES = {
    "usage_table": "USAGE_TABLE",
    "idempotency_table": "IDEMPOTENCY_TABLE",
    "accounts_table": "ACCOUNTS_TABLE",
}


class MissingSetting(RuntimeError):
    """An environment variable the package needs is not set."""

    def __init__(self, variables: list[str]) -> None:
        self.variables = variables
        super().__init__(
            f"{', '.join(variables)} not set: the stack's template sets "
            f"{'them' if len(variables) > 1 else 'it'} on every function "
            "(the admin CLI takes --stack-name NAME or --local)"
        )


class Settings(BaseModel):
    """Table names, the DynamoDB endpoint (set only for DynamoDB Local) and the tunables."""

    model_config = ConfigDict(frozen=True)

    usage_table: str
    idempotency_table: str
    accounts_table: str
    endpoint_url: str | None = None
    region: str | None = None
    key_cache_seconds: float = Field(default=MAX_KEY_CACHE_SECONDS, ge=0, le=MAX_KEY_CACHE_SECONDS)
    rollup_lookback_days: int | None = Field(default=None, ge=0)  # None: the rollup's own default
    rollup_workers: int | None = Field(default=None, ge=1)
    undeclared_metrics: Literal["accept", "reject"] = "accept"  # a metric with no meter
    dimension_cardinality: int = Field(default=DEFAULT_DIMENSION_CARDINALITY, ge=1)
    # combinations of dimension values per developer, meter and day; beyond: "(other)"
    glyphnet_requests_meter: str = Field(default="api_calls", pattern=METRIC_PATTERN)
    # the meter whose usage Glyphnet's compatible answer reports as requests


def _number(name: str, default: float) -> float:
    """A numeric tunable; unset or unreadable means its default (the bounds clamp the rest)."""
    try:
        return float(os.environ.get(name, "").strip() or default)
    except ValueError:
        return default


def _count(name: str) -> int | None:
    """A count tunable, or None when unset (the code's own default applies)."""
    text = os.environ.get(name, "").strip()
    return int(text) if text else None


def region() -> str | None:
    """The AWS region: Lambda sets AWS_REGION, a shell often only AWS_DEFAULT_REGION. Needs no
    table name, so the admin CLI can read a stack's outputs before it knows the tables."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Settings of this process, read once; tests clear the cache after changing the environment."""
    missing = [variable for variable in _TABLE_VARIABLES.values() if not os.environ.get(variable)]
    if missing:
        raise MissingSetting(missing)
    tables = {field: os.environ[variable] for field, variable in _TABLE_VARIABLES.items()}
    return Settings(
        **tables,
        endpoint_url=os.environ.get("DYNAMODB_ENDPOINT_URL") or None,
        region=region(),
        key_cache_seconds=max(
            0.0, min(_number("KEY_CACHE_SECONDS", MAX_KEY_CACHE_SECONDS), MAX_KEY_CACHE_SECONDS)
        ),
        rollup_lookback_days=_count("ROLLUP_LOOKBACK_DAYS"),
        rollup_workers=_count("ROLLUP_WORKERS"),
        dimension_cardinality=max(1, _count("DIMENSION_CARDINALITY") or DEFAULT_DIMENSION_CARDINALITY),
        undeclared_metrics="reject" if os.environ.get("UNDECLARED_METRICS") == "reject" else "accept",
        glyphnet_requests_meter=os.environ.get("GLYPHNET_REQUESTS_METER", "").strip() or "api_calls",
    )
