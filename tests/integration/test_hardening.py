"""Inputs found by fuzzing that once reached DynamoDB's own limits (500s); now exact 2xx/4xx."""

from __future__ import annotations

import pytest

from helpers import table_items
from integration.conftest import Stack


@pytest.mark.parametrize(
    "metadata",
    [{"x": 1e300}, {"x": 1e-300}, {"": 1}, {"deep": 12345678901234567890123456789012345678901234567890}],
    ids=["number-overflow", "number-underflow", "empty-key", "50-digit-integer"],
)
def test_any_json_metadata_is_stored_exactly(stack: Stack, metadata: dict[str, object]) -> None:
    body = '{"metric": "m", "quantity": 1, "idempotencyKey": "k", "metadata": ' + _raw(metadata) + "}"
    first = stack.track(body)
    assert first.status == 200, first.body
    again = stack.track(body)
    assert again.json()["results"][0]["status"] == "duplicate"
    (record,) = table_items(stack.dynamodb, stack.idempotency_table)
    assert record["metadata"]["S"] == _raw(metadata).replace(" ", "")


def _raw(metadata: dict[str, object]) -> str:
    """The metadata as the client writes it (1e300 stays 1e300 in the JSON text)."""
    import json

    return json.dumps(metadata, separators=(",", ":")).replace("1e+300", "1E+300").replace("1e-300", "1E-300")


def test_metadata_nested_deeper_than_32_levels_is_422(stack: Stack) -> None:
    nested = "[" * 40 + "]" * 40
    answer = stack.track('{"metric": "m", "quantity": 1, "metadata": {"a": ' + nested + "}}")
    assert answer.status == 422
    assert "nested deeper than 32" in answer.json()["error"]["message"]
    assert table_items(stack.dynamodb, stack.usage_table) == []


def test_a_body_nested_beyond_the_parser_is_400_not_500(stack: Stack) -> None:
    answer = stack.track('{"metric": "m", "quantity": 1, "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert answer.status == 400
    assert answer.json()["error"]["code"] == "invalid_json"


def test_one_odd_metadata_in_a_batch_does_not_sink_the_batch(stack: Stack) -> None:
    answer = stack.track(
        '{"events": [{"metric": "m", "quantity": 1, "idempotencyKey": "a", "metadata": {"x": 1e300}},'
        ' {"metric": "m", "quantity": 2, "idempotencyKey": "b"}]}'
    )
    assert answer.status == 200
    assert answer.json()["recorded"] == 2


def test_huge_exponents_in_metadata_are_cheap_and_bounded(stack: Stack) -> None:
    """1e999999999 must not be expanded to a billion digits anywhere."""
    answer = stack.track(
        '{"metric": "m", "quantity": 1, "idempotencyKey": "e", "metadata": {"x": 1e999999999}}'
    )
    assert answer.status == 200
    (record,) = table_items(stack.dynamodb, stack.idempotency_table)
    assert record["metadata"]["S"] == '{"x":1E+999999999}'
