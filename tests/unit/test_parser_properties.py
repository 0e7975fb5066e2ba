"""Properties of every parser a request goes through: each answers a value or its one refusal
(ValueError, JSONDecodeError, ValidationError), never anything else, which the HTTP layer
would turn into a 500. Found this way: timestamps past datetime's range once in UTC, integers
longer than int() converts, exponents past Decimal's range, quantities whose decimal places
pydantic miscounts, and numbers rounded to the context precision when written back.

Examples: PROPERTY_EXAMPLES (default 100 per test), the same ones every run unless
PROPERTY_SEED names a seed or PROPERTY_RANDOM asks for new ones (as test_properties.py), so
CI replays the same inputs and a long run can try others (README, "Tests").
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from usage_meter import jsonutil
from usage_meter.models.timestamps import parse_rfc3339
from usage_meter.models.wire import (
    MAX_METADATA_BYTES,
    MAX_QUANTITY,
    EventBatchIn,
    TrackBody,
    UsageEventIn,
)

F = TypeVar("F", bound=Callable[..., Any])

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "100"))
SEED = os.environ.get("PROPERTY_SEED")
RANDOM = bool(os.environ.get("PROPERTY_RANDOM"))


def long_mode(test: F) -> F:
    """The examples and seed of a run (see the module docstring)."""
    configured = settings(
        max_examples=EXAMPLES,
        derandomize=SEED is None and not RANDOM,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(test)
    return seed(int(SEED))(configured) if SEED is not None else configured


# ---- timestamps -------------------------------------------------------------------------------

RFC3339_SHAPE = (
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?"
    r"([Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST, LAST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)


def expected_instant(text: str) -> datetime | None:
    """What an RFC 3339 text means, computed apart from the parser: None when no datetime holds it."""
    match = re.fullmatch(RFC3339_SHAPE, text)
    assert match is not None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    micro = int(((match.group(7) or ".")[1:] + "000000")[:6])  # truncated to microseconds
    zone = match.group(8)
    offset = 0 if zone in "Zz" else (int(zone[1:3]) * 60 + int(zone[4:6])) * (1 if zone[0] == "+" else -1)
    try:
        ordinal = date(year, month, day).toordinal()
    except ValueError:
        return None
    if hour > 23 or minute > 59 or second > 59:
        return None
    # microseconds since 0001-01-01T00:00Z, as plain integers: nothing here can overflow
    total = ((((ordinal - 1) * 24 + hour) * 60 + minute - offset) * 60 + second) * 10**6 + micro
    if not 0 <= total <= (LAST - FIRST) // timedelta(microseconds=1):
        return None
    return FIRST + timedelta(microseconds=total)


def assert_parsed_as_meant(text: str) -> None:
    """The parser gives the instant the text means, or a ValueError when no datetime holds it."""
    expected = expected_instant(text)
    if expected is None:
        with pytest.raises(ValueError):  # noqa: PT011 (the parser's one refusal)
            parse_rfc3339(text)
        return
    parsed = parse_rfc3339(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@long_mode
@given(st.from_regex(RFC3339_SHAPE, fullmatch=True))
def test_rfc3339_texts_parse_to_their_instant_or_are_refused(text: str) -> None:
    assert_parsed_as_meant(text)


@long_mode
@given(
    st.sampled_from(
        ["0001-01-01T00:00:00", "9999-12-31T23:59:59", "0001-01-01T23:58:59", "9999-12-31T00:01:00"]
    ),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
    st.sampled_from(["", ".999999", ".000000001"]),
)
def test_offsets_at_the_ends_of_the_calendar(moment: str, offset_minutes: int, fraction: str) -> None:
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    assert_parsed_as_meant(f"{moment}{fraction}{sign}{hours:02d}:{minutes:02d}")


@long_mode
@given(st.text())
def test_any_text_is_a_utc_instant_or_a_value_error(text: str) -> None:
    try:
        parsed = parse_rfc3339(text)
    except ValueError:
        return
    assert parsed.tzinfo is UTC


@long_mode
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
)
def test_an_aware_datetime_written_in_rfc3339_reads_back(moment: datetime, offset_minutes: int) -> None:
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    assert parse_rfc3339(aware.isoformat()) == aware


# ---- JSON ---------------------------------------------------------------------------------------

# numbers as a client may write them: long, tiny, with exponents past what Decimal holds
NUMBER_TEXT = st.one_of(
    st.from_regex(r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,40})?([eE][+-]?[0-9]{1,22})?", fullmatch=True),
    st.sampled_from(["7" * 4300, "7" * 4301, "-" + "9" * 5000, "-0", "0.0", "1e999999999", "1e-999999999"]),
)
JSON_SCALAR_TEXT = st.one_of(
    NUMBER_TEXT,
    st.sampled_from(["true", "false", "null", "NaN", "Infinity", "-Infinity"]),
    st.text(max_size=20).map(json.dumps),
)


def json_text(leaves: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """JSON texts (valid unless a leaf is not) with the given leaves, nested a few levels."""
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4).map(lambda items: "[" + ",".join(items) + "]"),
            st.dictionaries(st.text(max_size=8), inner, max_size=4).map(
                lambda d: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in d.items()) + "}"
            ),
        ),
        max_leaves=12,
    )


FINITE_DECIMALS = st.decimals(allow_nan=False, allow_infinity=False)
JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        FINITE_DECIMALS,
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@long_mode
@given(NUMBER_TEXT)
def test_every_json_number_parses_exactly_or_to_out_of_range(text: str) -> None:
    value = jsonutil.loads(text)
    assert type(value) in (int, Decimal)
    if isinstance(value, Decimal) and value.is_nan():
        assert value is jsonutil.OUT_OF_RANGE
        return
    assert value == Decimal(text)


@long_mode
@given(json_text(JSON_SCALAR_TEXT))
def test_json_texts_parse_or_raise_a_decode_error(text: str) -> None:
    try:
        jsonutil.loads(text)
    except json.JSONDecodeError:
        assert any(word in text for word in ("NaN", "Infinity"))


@long_mode
@given(st.one_of(st.text(), st.binary()))
def test_any_body_parses_or_is_refused_as_json(body: str | bytes) -> None:
    try:
        value = jsonutil.loads_object(body)
    except (json.JSONDecodeError, UnicodeDecodeError):  # 400 invalid_json / invalid_body
        return
    assert isinstance(value, dict)


@long_mode
@given(st.integers(min_value=1, max_value=3000))
def test_any_nesting_parses_or_is_a_decode_error(depth: int) -> None:
    with contextlib.suppress(json.JSONDecodeError):
        jsonutil.loads('{"a":' + "[" * depth + "]" * depth + "}")


@long_mode
@given(JSON_VALUES)
def test_what_dumps_writes_loads_reads_back_exactly(value: Any) -> None:
    assert jsonutil.loads(jsonutil.dumps(value)) == value


@long_mode
@given(
    st.one_of(
        FINITE_DECIMALS,
        # more significant digits than the context's precision (60): normalize() would round
        st.from_regex(r"-?[0-9]{1,90}\.[0-9]{1,90}", fullmatch=True).map(Decimal),
    )
)
def test_number_text_is_exact_and_plain_near_quantities(value: Decimal) -> None:
    text = jsonutil.number_text(value)
    assert Decimal(text) == value
    if -40 <= value.adjusted() <= 40:
        assert "E" not in text
        assert "." not in text or not text.endswith("0")


# ---- the wire models ------------------------------------------------------------------------

FIELDS = ["metric", "quantity", "idempotencyKey", "timestamp", "developerId", "metadata", "events"]
ADVERSARIAL = st.one_of(
    JSON_VALUES,
    NUMBER_TEXT.map(jsonutil.loads),
    st.from_regex(RFC3339_SHAPE, fullmatch=True),
    st.sampled_from(["api_calls", "dev_alice", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"]),
)
BODIES = st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=6)), ADVERSARIAL, max_size=7)
TRACK_BODY: TypeAdapter[Any] = TypeAdapter(TrackBody)


def check_event(event: UsageEventIn) -> None:
    """What an accepted event promises the code after it: a quantity, when there is one, is an
    exact, non-zero, finite decimal of at most 12 digits before the point and 9 after (its
    sign is its meter's business, see domain/meters.contribution)."""
    q = event.quantity
    if q is not None:
        assert q.is_finite()
        assert 0 < abs(q) <= MAX_QUANTITY
        assert q == q.quantize(Decimal("1E-9"))  # at most 9 decimal places
    if event.timestamp is not None:
        assert event.timestamp.tzinfo is UTC
    if event.metadata is not None:
        assert len(jsonutil.dumps(event.metadata).encode()) <= MAX_METADATA_BYTES


@long_mode
@given(BODIES)
def test_any_body_is_an_event_a_batch_or_a_validation_error(body: dict[str, Any]) -> None:
    try:
        parsed = TRACK_BODY.validate_python(body)
    except ValidationError as exc:
        exc.errors(include_url=False, include_input=False, include_context=False)  # describable
        return
    if isinstance(parsed, EventBatchIn):
        for item in parsed.events:
            with contextlib.suppress(ValidationError):
                check_event(UsageEventIn.model_validate(item))
    else:
        check_event(parsed)


@long_mode
@given(
    st.builds(
        lambda metric, quantity, extra: {"metric": metric, "quantity": quantity, **extra},
        st.sampled_from(["api_calls", "tokens"]),
        ADVERSARIAL,
        st.dictionaries(
            st.sampled_from(["timestamp", "metadata", "idempotencyKey"]), ADVERSARIAL, max_size=3
        ),
    )
)
def test_near_valid_events_are_valid_or_refused(body: dict[str, Any]) -> None:
    try:
        event = UsageEventIn.model_validate(body)
    except ValidationError:
        return
    check_event(event)


@long_mode
@given(
    st.integers(min_value=1, max_value=10**12 - 1),
    st.integers(min_value=0, max_value=80),
    st.integers(min_value=1, max_value=9),
    st.integers(min_value=0, max_value=40),
)
def test_a_quantity_is_accepted_exactly_when_it_has_at_most_9_places(
    whole: int, zeros: int, last: int, trailing_zeros: int
) -> None:
    """whole.(zeros)last(trailing zeros): zeros + 1 places, whatever the digits past the
    context's precision (pydantic's own count rounds there)."""
    quantity = Decimal(f"{whole}.{'0' * zeros}{last}{'0' * trailing_zeros}")
    if zeros + 1 > 9:
        with pytest.raises(ValidationError) as refused:
            UsageEventIn.model_validate({"metric": "m", "quantity": quantity})
        assert [e["type"] for e in refused.value.errors()] == ["decimal_max_places"]
    else:
        assert UsageEventIn.model_validate({"metric": "m", "quantity": quantity}).quantity == quantity


@long_mode
@given(json_text(NUMBER_TEXT), st.sampled_from(["quantity", "metadata"]))
def test_an_event_parsed_from_json_text_is_valid_or_refused(text: str, field: str) -> None:
    value = jsonutil.loads(text)
    body = {"metric": "m", "quantity": 1, field: value}
    try:
        event = UsageEventIn.model_validate(body)
    except ValidationError:
        return
    check_event(event)
