"""Validation messages speak JSON, not Python (issue 21 item 14): a bound is the number a
client sends (1000000000000, not Decimal('1000000000000')), a choice or a pattern is quoted
as a JSON string."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from usage_meter.errors import validation_failed
from usage_meter.models.wire import UsageEventIn


def refusal(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        UsageEventIn.model_validate(body)
    return validation_failed(caught.value).message


def test_a_decimal_bound_is_a_json_number() -> None:
    message = refusal({"developerId": "dev_a", "metric": "api_calls", "quantity": 10**13})
    assert message == "quantity: Input should be less than or equal to 1000000000000"
    assert "Decimal" not in message


def test_a_pattern_is_quoted_as_json() -> None:
    message = refusal({"developerId": "dev_a", "metric": "9lives", "quantity": 1})
    assert message == 'metric: String should match pattern "^[A-Za-z][A-Za-z0-9_.-]{0,63}$"'


def test_a_validators_own_message_has_no_python_prefix() -> None:
    message = refusal(
        {"developerId": "dev_a", "metric": "api_calls", "quantity": 1, "metadata": {"b": "x" * 2100}}
    )
    assert message == "metadata: metadata is 2108 bytes serialized; at most 2048"


def test_the_quantity_bounds_are_json_numbers_both_ways() -> None:
    message = refusal({"developerId": "dev_a", "metric": "api_calls", "quantity": -(10**13)})
    assert message == "quantity: Input should be greater than or equal to -1000000000000"
