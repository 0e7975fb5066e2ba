"""The compatible surfaces' own arithmetic: Grantex's integers and Glyphnet's daily average."""

from __future__ import annotations

from decimal import Decimal

import pytest

from usage_meter.domain.compat import GLYPHNET_CONFIDENCE, _glyphnet_day, whole
from usage_meter.models.wire import HistoryEntry


@pytest.mark.parametrize(
    ("value", "expected"),
    [(Decimal(7), 7), (Decimal("7.000"), 7), (Decimal("7.9"), 7), (Decimal("1E+3"), 1000), (Decimal(0), 0)],
)
def test_grantex_counts_are_whole(value: Decimal, expected: int) -> None:
    counted = whole(value)
    assert (counted, type(counted)) == (expected, int)


def test_glyphnet_day_averages_the_confidence_of_that_days_verifications() -> None:
    entry = HistoryEntry(
        date="2026-11-24",
        metrics={"api_calls": Decimal(3), "verified_claims": Decimal(9), GLYPHNET_CONFIDENCE: Decimal("2.0")},
        total_requests=9,
        events={"api_calls": 3, "verified_claims": 3, GLYPHNET_CONFIDENCE: 3},
    )
    day = _glyphnet_day(entry, "api_calls")
    assert (day.requests, day.verified_claims, day.avg_confidence) == (3, 9, Decimal("0.666666667"))
    quiet = HistoryEntry(date="2026-11-25", metrics={}, total_requests=0, events={})
    assert _glyphnet_day(quiet, "api_calls").wire() == {
        "date": "2026-11-25",
        "requests": 0,
        "verified_claims": 0,
        "avg_confidence": None,
    }
