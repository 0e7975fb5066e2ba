"""JSON with exact decimals: what the API reads and writes."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from usage_meter import jsonutil


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1.10", Decimal("1.10")),
        ("0.000000001", Decimal("0.000000001")),
        ("123456789012.123456789", Decimal("123456789012.123456789")),
        ("1e12", Decimal("1E+12")),
        ("-2.5E-3", Decimal("-0.0025")),
    ],
)
def test_loads_keeps_non_integers_as_exact_decimals(text: str, value: Decimal) -> None:
    parsed = jsonutil.loads(text)
    assert type(parsed) is Decimal
    assert parsed == value


def test_loads_keeps_integers_as_int() -> None:
    parsed = jsonutil.loads('{"n": 12345678901234567890}')
    assert parsed == {"n": 12345678901234567890}
    assert type(parsed["n"]) is int


@pytest.mark.parametrize("digits", ["7" * 4301, "-" + "9" * 10_000])
def test_integers_longer_than_int_converts_are_exact_decimals(digits: str) -> None:
    """int() refuses more than 4,300 digits with a ValueError json.loads let through (a 500)."""
    parsed = jsonutil.loads('{"n": [' + digits + "]}")
    (number,) = parsed["n"]
    assert type(number) is Decimal
    assert number == Decimal(digits)
    assert type(jsonutil.loads("7" * 4300)) is int  # up to the limit, still an int


@pytest.mark.parametrize(
    "text", ["1e99999999999999999999", "-1.5E+99999999999999999999", "1e-99999999999999999999"]
)
def test_numbers_past_decimals_range_parse_to_out_of_range(text: str) -> None:
    """Valid JSON no Decimal holds: a value every field rule refuses, not a parse error (which
    would sink a whole batch) nor InvalidOperation (a 500)."""
    (parsed,) = jsonutil.loads("[" + text + "]")
    assert parsed is jsonutil.OUT_OF_RANGE
    with pytest.raises(ValueError, match="non-finite"):
        jsonutil.dumps({"x": parsed})


def test_decimal_arithmetic_after_loads_is_exact() -> None:
    a, b = jsonutil.loads("[0.1, 0.2]")
    assert a + b == Decimal("0.3")
    assert 0.1 + 0.2 != 0.3  # what float parsing would have given


@pytest.mark.parametrize(
    "text",
    ["1.5", "0.000000001", "123456789012.123456789", "-7.25", "1000000000000", "0"],
)
def test_numbers_round_trip_exactly(text: str) -> None:
    assert jsonutil.dumps(jsonutil.loads(text)) == text
    assert jsonutil.loads(jsonutil.dumps(jsonutil.loads(text))) == Decimal(text)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", '{"quantity": NaN}', "[1, Infinity]"])
def test_loads_refuses_nan_and_infinity(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        jsonutil.loads(text)


@pytest.mark.parametrize("text", ["", "{", "{'a': 1}", '{"a": 1} x', "01"])
def test_loads_refuses_malformed_json(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        jsonutil.loads(text)


def test_loads_accepts_bytes() -> None:
    assert jsonutil.loads(b'{"quantity": 2.50}') == {"quantity": Decimal("2.50")}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("1.50"), "1.5"),
        (Decimal("1E+2"), "100"),
        (Decimal("1E+12"), "1000000000000"),
        (Decimal("1E-9"), "0.000000001"),
        (Decimal("-0"), "0"),
        (Decimal("0.000"), "0"),
        (Decimal("-12.3400"), "-12.34"),
        # more digits than the context's precision (60): once rounded by normalize()
        (Decimal("1." + "1" * 70), "1." + "1" * 70),
        (Decimal("-" + "9" * 40 + "." + "9" * 30 + "000"), "-" + "9" * 40 + "." + "9" * 30),
    ],
)
def test_number_text_has_no_exponent_and_no_trailing_zeros(value: Decimal, text: str) -> None:
    assert jsonutil.number_text(value) == text
    assert jsonutil.dumps(value) == text


@pytest.mark.parametrize(
    "value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("sNaN")]
)
def test_non_finite_decimals_are_not_written(value: Decimal) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        jsonutil.dumps({"quantity": value})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_are_not_written(value: float) -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        jsonutil.dumps([value])


def test_dumps_nested_structures() -> None:
    value = {
        "results": [
            {"index": 0, "status": "recorded", "error": None, "ok": True, "retry": False},
            {"index": 1, "quantity": Decimal("2.50"), "tags": ("a", "b"), "ratio": 0.25},
        ],
        "usage": {"consumed": Decimal("1E+3"), "limit": None, "nested": {"deep": [[], {}]}},
        7: "int key",
    }
    assert jsonutil.dumps(value) == (
        '{"results":[{"index":0,"status":"recorded","error":null,"ok":true,"retry":false},'
        '{"index":1,"quantity":2.5,"tags":["a","b"],"ratio":0.25}],'
        '"usage":{"consumed":1000,"limit":null,"nested":{"deep":[[],{}]}},"7":"int key"}'
    )


def test_dumps_escapes_strings_as_ascii() -> None:
    assert jsonutil.dumps({"name": 'é "quoted"\n\u2028'}) == '{"name":"\\u00e9 \\"quoted\\"\\n\\u2028"}'


def test_dumps_output_is_parsed_back_to_the_same_value() -> None:
    value = {"a": [Decimal("0.1"), 2, "x", None, True], "b": {"c": Decimal("123.456789012")}}
    assert jsonutil.loads(jsonutil.dumps(value)) == value


@pytest.mark.parametrize("value", [{1, 2}, object(), b"bytes", {"k": Decimal}])
def test_dumps_refuses_what_json_cannot_hold(value: object) -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsonutil.dumps(value)


def test_loads_object_returns_objects() -> None:
    assert jsonutil.loads_object('{"quantity": 1.50}') == {"quantity": Decimal("1.50")}
    assert jsonutil.loads_object(b"{}") == {}


@pytest.mark.parametrize(
    "text", ["[]", '[{"metric": "a", "quantity": 1}]', "5", "1.5", '"x"', "null", "true"]
)
def test_loads_object_refuses_everything_but_an_object(text: str) -> None:
    """An array would otherwise be taken for its first element by the request validation."""
    with pytest.raises(json.JSONDecodeError) as caught:
        jsonutil.loads_object(text)
    assert caught.value.msg == jsonutil.NOT_AN_OBJECT


@pytest.mark.parametrize("text", ["{", "NaN", '{"q": Infinity}'])
def test_loads_object_refuses_invalid_json_as_invalid(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as caught:
        jsonutil.loads_object(text)
    assert caught.value.msg != jsonutil.NOT_AN_OBJECT


def test_sums_beyond_28_digits_stay_exact() -> None:
    """DynamoDB keeps 38 significant digits; so must every sum made in memory."""
    big = Decimal("999999999999999999.999999999")  # 27 digits
    total = sum([big] * 1000, Decimal(0))  # 30 digits: rounded under Python's default 28
    assert total == Decimal("999999999999999999999.999999000")
    assert jsonutil.number_text(total) == "999999999999999999999.999999"
