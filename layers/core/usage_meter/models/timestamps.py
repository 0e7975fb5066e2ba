"""RFC 3339 parsing and the API's two timestamp formats: one home for how time is written."""

from __future__ import annotations

import re
from datetime import UTC, datetime

# [0-9], not \d: in a str pattern \d is any Unicode digit (Arabic-Indic, fullwidth, ...)
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?"
    r"([Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (offset required) into an aware UTC datetime.

    Stricter than datetime.fromisoformat: no dates without times, no missing offsets, no
    week dates, so that "when" an event happened is never guessed.
    """
    match = _RFC3339.fullmatch(text)  # not match(): "$" would accept a trailing newline
    if not match:
        raise ValueError("timestamp must be RFC 3339, e.g. 2026-11-25T10:00:00Z")
    fraction = (match.group(7) or "")[:7]  # at most microseconds, truncated not rounded
    offset = match.group(8).upper()
    normalized = f"{text[:19]}{fraction}{'+00:00' if offset == 'Z' else offset}"
    parsed = datetime.fromisoformat(normalized.replace("t", "T"))
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-23:59 is a valid RFC 3339 text for an instant after year 9999
        # (0001-01-01T00:00:00+23:59 one before year 1): no datetime holds it
        raise ValueError("timestamp is outside the years 0001-9999 once converted to UTC") from None


def format_timestamp(moment: datetime) -> str:
    """UTC, millisecond precision, trailing Z: the one timestamp format the API answers with."""
    utc = moment.astimezone(UTC)
    # %Y does not pad years below 1000, and these strings are compared as sort keys
    return f"{utc.year:04d}" + utc.strftime("-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def format_instant(moment: datetime) -> str:
    """Period bounds: whole seconds, trailing Z (2026-11-01T00:00:00Z)."""
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}" + utc.strftime("-%m-%dT%H:%M:%SZ")
