"""JSON in and out with exact decimals: numbers are parsed as Decimal and written back verbatim."""

from __future__ import annotations

import json
from decimal import Context, Decimal, InvalidOperation
from typing import Any

_encode_str = json.encoder.encode_basestring_ascii


def _reject_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


OUT_OF_RANGE = Decimal("NaN")
"""What a JSON number no Decimal can hold parses to (1e99999999999999999999: an exponent past
decimal.MAX_EMAX). Valid JSON, so not a parse error that would sink a whole batch; not finite,
so every field rule refuses it (a quantity must be finite, metadata must be writable)."""


def _decimal(text: str) -> Decimal:
    """A non-integer number, exactly; OUT_OF_RANGE when its exponent is past what Decimal holds."""
    try:
        return Decimal(text)
    except InvalidOperation:
        return OUT_OF_RANGE


def _integer(text: str) -> int | Decimal:
    """An integer as int, or as an exact Decimal when it is longer than Python converts.

    int() refuses more than sys.get_int_max_str_digits() digits (4,300 by default) with a
    ValueError that json.loads would let through: a valid JSON body would answer 500. As a
    Decimal it stays exact and is refused, or kept, by the field rules like any big number.
    """
    try:
        return int(text)
    except ValueError:
        return Decimal(text)


def loads(text: str | bytes) -> Any:
    """Parse JSON keeping every non-integer number as an exact Decimal; NaN/Infinity are refused.

    Integers stay int unless too long for int() (see _integer); whatever the numbers, a valid
    JSON text parses and an invalid one raises JSONDecodeError, nothing else.
    """
    try:
        return json.loads(text, parse_float=_decimal, parse_int=_integer, parse_constant=_reject_constant)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text if isinstance(text, str) else "", 0) from None


NOT_AN_OBJECT = "the body must be a JSON object"


def loads_object(text: str | bytes) -> Any:
    """A request body: a JSON object, nothing else.

    Refusing arrays here matters: the request validation would otherwise take an array's
    first element for the body and silently drop the rest.
    """
    value = loads(text)
    if not isinstance(value, dict):
        raise json.JSONDecodeError(NOT_AN_OBJECT, text if isinstance(text, str) else text.decode(), 0)
    return value


def number_text(value: Decimal) -> str:
    """A Decimal as a JSON number without exponent or trailing zeros (1.50 -> 1.5, 1E+2 -> 100)."""
    if not value.is_finite():
        raise ValueError("a non-finite number (NaN, an infinity, or one past Decimal's range)")
    if not -40 <= value.adjusted() <= 40:
        # far outside any quantity: keep the exponent (1E+300), never write 300 digits (or a
        # billion, for 1e999999999 in someone's metadata); adjusted() needs no context
        return str(value)
    # normalize() rounds to its context's precision: give it every digit the value has, so
    # that 1.(70 digits) in someone's metadata is written as sent, not rounded to 60
    exact = Context(prec=max(len(value.as_tuple().digits), 1))
    text = format(value.normalize(exact), "f")
    return "0" if text in ("-0", "0") else text


def dumps(value: Any) -> str:
    """Compact JSON; Decimals are written as exact numbers (json.dumps cannot do that)."""
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_str(value))
    elif isinstance(value, Decimal):
        out.append(number_text(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(json.dumps(value, allow_nan=False))
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(_encode_str(str(key)))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"not JSON serializable: {type(value).__name__}")
