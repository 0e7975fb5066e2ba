"""The one source of "now", so tests can move time without patching datetime."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """Current time in UTC (timezone-aware)."""
    return datetime.now(UTC)
