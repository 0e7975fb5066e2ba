"""The wire models' rules, applied directly (the HTTP layer only maps their errors)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from usage_meter.domain.accounts import is_well_formed
from usage_meter.models.accounts import Identity, Plan
from usage_meter.models.wire import EventBatchIn, TrackBody, UsageEventIn


def event(**fields: Any) -> dict[str, Any]:
    return {"metric": "api_calls", "quantity": 1, **fields}


def refusal(data: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """(location, error type) of every error the model reports."""
    with pytest.raises(ValidationError) as caught:
        UsageEventIn.model_validate(data)
    return [(tuple(e["loc"]), e["type"]) for e in caught.value.errors()]


def test_minimal_event() -> None:
    parsed = UsageEventIn.model_validate({"metric": "api_calls", "quantity": 3})
    assert parsed.metric == "api_calls"
    assert parsed.quantity == Decimal(3)
    assert type(parsed.quantity) is Decimal
    assert (parsed.idempotency_key, parsed.timestamp, parsed.developer_id, parsed.metadata) == (
        None,
        None,
        None,
        None,
    )


def test_full_event_in_camel_case() -> None:
    parsed = UsageEventIn.model_validate(
        {
            "metric": "tokens",
            "quantity": Decimal("1.25"),
            "idempotencyKey": "req-1",
            "timestamp": "2026-11-25T10:00:00+01:00",
            "developerId": "dev_alice",
            "metadata": {"model": "small", "n": [1, 2]},
        }
    )
    assert parsed.quantity == Decimal("1.25")
    assert parsed.idempotency_key == "req-1"
    assert parsed.timestamp == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert parsed.developer_id == "dev_alice"
    assert parsed.metadata == {"model": "small", "n": [1, 2]}
    assert parsed.wire()["idempotencyKey"] == "req-1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, Decimal(1)),
        (10**12, Decimal(10**12)),
        (Decimal("0.000000001"), Decimal("0.000000001")),
        (Decimal("999999999999.999999999"), Decimal("999999999999.999999999")),
        (Decimal("1.5000000000"), Decimal("1.5")),  # trailing zeros are not decimal places
        (0.1, Decimal("0.1")),  # a float from a caller that bypassed jsonutil: its shortest repr
        (2.675, Decimal("2.675")),
        # signed: a level meter takes a negative change (its meter, not the model, refuses a
        # negative quantity for the other aggregations: see tests/unit/test_meter_rules.py)
        (-1, Decimal(-1)),
        (Decimal("-0.000000001"), Decimal("-0.000000001")),
        (-(10**12), Decimal(-(10**12))),
    ],
)
def test_quantity_accepted(value: Any, expected: Decimal) -> None:
    parsed = UsageEventIn.model_validate(event(quantity=value))
    assert parsed.quantity == expected
    assert type(parsed.quantity) is Decimal


@pytest.mark.parametrize(
    ("value", "error_type"),
    [
        (0, "not_zero"),
        (Decimal("0.000"), "not_zero"),
        (Decimal("-0"), "not_zero"),
        (-(10**12) - 1, "greater_than_equal"),
        (10**12 + 1, "less_than_equal"),
        (Decimal("1000000000000.000000001"), "less_than_equal"),
        (Decimal("1E+309"), "less_than_equal"),
        (Decimal("0.0000000001"), "decimal_max_places"),
        (Decimal("1.0000000001"), "decimal_max_places"),
        # pydantic's own count normalizes in the context, which flushes these to 0 places
        (Decimal("1E-999999999"), "decimal_max_places"),
        (Decimal("7.5E-999999999999999999"), "decimal_max_places"),
        # ... or rounds to 60 digits: 61 places, read as 0
        (Decimal("1." + "0" * 59 + "1"), "decimal_max_places"),
        (Decimal("7" * 4301), "less_than_equal"),
        (Decimal("NaN"), "finite_number"),
        (Decimal("Infinity"), "finite_number"),
        (Decimal("-Infinity"), "finite_number"),
        (float("nan"), "finite_number"),
        (float("inf"), "finite_number"),
        ("5", "value_error"),
        ("1.5", "value_error"),
        (True, "value_error"),
        (False, "value_error"),
        ([1], "value_error"),
    ],
)
def test_quantity_refused(value: Any, error_type: str) -> None:
    assert refusal(event(quantity=value)) == [(("quantity",), error_type)]


def test_quantity_is_optional_in_the_model() -> None:
    """Absent or null: a count meter's event needs none; the other meters refuse its absence
    (domain/meters.contribution, tests/unit/test_meter_rules.py)."""
    assert UsageEventIn.model_validate({"metric": "logins"}).quantity is None
    assert UsageEventIn.model_validate({"metric": "logins", "quantity": None}).quantity is None


@pytest.mark.parametrize("metric", ["a", "A", "api_calls", "api.calls", "api-calls", "Tokens2", "m" * 64])
def test_metric_accepted(metric: str) -> None:
    assert UsageEventIn.model_validate(event(metric=metric)).metric == metric


@pytest.mark.parametrize(
    "metric",
    ["", "1api", "_api", ".api", "-api", "m" * 65, "api calls", "api#calls", "api/calls", "émails", "api\n"],
)
def test_metric_refused(metric: str) -> None:
    assert refusal(event(metric=metric)) == [(("metric",), "string_pattern_mismatch")]


def test_metric_must_be_a_string() -> None:
    assert refusal(event(metric=5)) == [(("metric",), "string_type")]


def test_required_fields() -> None:
    assert refusal({}) == [(("metric",), "missing")]  # quantity: see test_quantity_is_optional_in_the_model


@pytest.mark.parametrize("key", ["k", "k" * 255, "order 42/line 7#a"])
def test_idempotency_key_accepted(key: str) -> None:
    assert UsageEventIn.model_validate(event(idempotencyKey=key)).idempotency_key == key


@pytest.mark.parametrize(
    ("key", "error_type"), [("", "string_too_short"), ("k" * 256, "string_too_long"), (7, "string_type")]
)
def test_idempotency_key_refused(key: Any, error_type: str) -> None:
    assert refusal(event(idempotencyKey=key)) == [(("idempotencyKey",), error_type)]


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-11-25",
        "2026-11-25T10:00:00",
        "2026-13-01T00:00:00Z",
        "soon",
        1795600000,
        1795600000.5,
        # valid RFC 3339 texts of instants past datetime's range once in UTC (were OverflowError)
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
        "2026-11-25T10:00:00\N{ARABIC-INDIC DIGIT ZERO}Z",
        "\N{FULLWIDTH DIGIT TWO}026-11-25T10:00:00Z",
    ],
)
def test_timestamp_refused(timestamp: Any) -> None:
    assert refusal(event(timestamp=timestamp)) == [(("timestamp",), "value_error")]


def test_timestamp_refuses_a_datetime_object() -> None:
    """Only RFC 3339 text: a naive datetime would be a guess about the offset."""
    assert refusal(event(timestamp=datetime(2026, 11, 25, 10, 0))) == [(("timestamp",), "value_error")]


@pytest.mark.parametrize("developer_id", ["dev_alice", "a", "D-1", "x" * 64])
def test_developer_id_accepted(developer_id: str) -> None:
    assert UsageEventIn.model_validate(event(developerId=developer_id)).developer_id == developer_id


@pytest.mark.parametrize(
    "developer_id", ["", "_dev", "dev#1", "dev.alice", "dev alice", "x" * 65, "dev_alice\n", "\ndev_alice"]
)
def test_developer_id_refused(developer_id: str) -> None:
    assert refusal(event(developerId=developer_id)) == [(("developerId",), "string_pattern_mismatch")]


def test_metadata_up_to_2048_bytes() -> None:
    at_limit = {"x": "y" * 2040}  # {"x":"..."} serialized: 8 bytes + the string
    assert UsageEventIn.model_validate(event(metadata=at_limit)).metadata == at_limit
    assert refusal(event(metadata={"x": "y" * 2041})) == [(("metadata",), "value_error")]


def test_metadata_size_counts_serialized_bytes_not_characters() -> None:
    # every "é" is written as \u00e9: 6 bytes
    assert UsageEventIn.model_validate(event(metadata={"x": "é" * 340})).metadata is not None  # 2048
    assert refusal(event(metadata={"x": "é" * 341})) == [(("metadata",), "value_error")]


@pytest.mark.parametrize("metadata", [[1, 2], "text", 5, True])
def test_metadata_must_be_an_object(metadata: Any) -> None:
    assert refusal(event(metadata=metadata)) == [(("metadata",), "dict_type")]


def test_metadata_must_be_plain_json() -> None:
    assert refusal(event(metadata={"when": datetime(2026, 11, 25, tzinfo=UTC)})) == [
        (("metadata",), "value_error")
    ]


def test_unknown_fields_are_refused() -> None:
    assert refusal(event(unit="requests", Metric="x")) == [
        (("unit",), "extra_forbidden"),
        (("Metric",), "extra_forbidden"),
    ]


def test_every_error_is_reported_at_once() -> None:
    assert refusal({"metric": "", "quantity": 0, "idempotencyKey": "", "extra": 1}) == [
        (("metric",), "string_pattern_mismatch"),
        (("quantity",), "not_zero"),
        (("idempotencyKey",), "string_too_short"),
        (("extra",), "extra_forbidden"),
    ]


# ---- batches and the body union ---------------------------------------------------------------


def test_batch_sizes() -> None:
    assert len(EventBatchIn.model_validate({"events": [event()] * 100}).events) == 100
    assert len(EventBatchIn.model_validate({"events": [event()]}).events) == 1
    for size, error_type in ((0, "too_short"), (101, "too_long")):
        with pytest.raises(ValidationError) as caught:
            EventBatchIn.model_validate({"events": [event()] * size})
        assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [(("events",), error_type)]


def test_batch_items_are_left_for_per_item_validation() -> None:
    """One bad item must not sink the batch: items are validated later, one by one."""
    batch = EventBatchIn.model_validate({"events": [event(), event(quantity=0), {"anything": "goes"}]})
    assert batch.events[1] == event(quantity=0)


def test_batch_refuses_unknown_fields_and_non_lists() -> None:
    for body in ({"events": [event()], "extra": 1}, {"events": "x"}, {"events": None}):
        with pytest.raises(ValidationError):
            EventBatchIn.model_validate(body)


def test_track_body_tells_events_from_batches() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(TrackBody)
    assert isinstance(adapter.validate_python(event()), UsageEventIn)
    assert isinstance(adapter.validate_python({"events": [event()]}), EventBatchIn)
    with pytest.raises(ValidationError):
        adapter.validate_python({"events": [event()], "metric": "x", "quantity": 1})


# ---- every pattern that validates input matches the whole value ---------------------------------
# ("abc\n" passes `re.match` with a `$` pattern; pydantic's patterns use the Rust engine, where `$`
# is the end of the text, and must stay that way)


@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "\x00"])
def test_patterns_refuse_a_trailing_line_break_or_junk(suffix: str) -> None:
    assert refusal(event(metric="api_calls" + suffix)) == [(("metric",), "string_pattern_mismatch")]
    assert refusal(event(developerId="dev_alice" + suffix)) == [(("developerId",), "string_pattern_mismatch")]
    with pytest.raises(ValidationError):
        Identity(developer_id="dev_alice" + suffix, role="service")
    with pytest.raises(ValidationError):
        Plan(name="free" + suffix)


def test_key_shape_is_a_full_match() -> None:
    key = "um_live_" + "A" * 32
    assert is_well_formed(key)
    for bad in (key + "\n", key + "\r\n", "\n" + key, key + "A", key[:-1]):
        assert not is_well_formed(bad), repr(bad)
