"""What an event adds to its meter (domain/meters.contribution and unique_value): the rules
the wire model cannot know, since they depend on the metric's meter."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from usage_meter.domain.meters import contribution, refuse_unusable, unique_value
from usage_meter.errors import ValidationFailed
from usage_meter.models.accounts import Meter
from usage_meter.models.wire import Aggregation

FIELD_ERROR_TYPE = {"quantity_required": "missing", "quantity_not_positive": "greater_than"}
VISITORS = Meter(
    name="visitors", aggregation="unique_count", unique_by="user", created_at="2026-12-01T00:00:00.000Z"
)


@pytest.mark.parametrize(
    ("aggregation", "sent", "adds"),
    [
        ("sum", Decimal("2.5"), Decimal("2.5")),
        ("max", Decimal("7"), Decimal("7")),
        ("latest", Decimal("0.000000001"), Decimal("0.000000001")),
        ("unique_count", Decimal("1"), Decimal("1")),
        ("count", None, Decimal(1)),
        ("count", Decimal("40"), Decimal(1)),  # a count meter counts events: the quantity is ignored
        ("level", Decimal("3"), Decimal("3")),
        ("level", Decimal("-2"), Decimal("-2")),
    ],
)
def test_what_an_event_contributes(aggregation: Aggregation, sent: Decimal | None, adds: Decimal) -> None:
    assert contribution(aggregation, sent) == adds


@pytest.mark.parametrize(
    ("aggregation", "sent", "code", "message"),
    [
        ("sum", None, "quantity_required", "quantity: Field required (for a sum meter)"),
        ("level", None, "quantity_required", "quantity: Field required (for a level meter)"),
        ("sum", Decimal("-1"), "quantity_not_positive", "quantity: Input should be greater than 0"),
        ("max", Decimal("-0.5"), "quantity_not_positive", "quantity: Input should be greater than 0"),
        ("latest", Decimal("-3"), "quantity_not_positive", "quantity: Input should be greater than 0"),
        ("unique_count", Decimal("-1"), "quantity_not_positive", "quantity: Input should be greater than 0"),
        ("count", Decimal("-1"), "quantity_not_positive", "quantity: Input should be greater than 0"),
    ],
)
def test_quantities_a_meter_refuses(
    aggregation: Aggregation, sent: Decimal | None, code: str, message: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        contribution(aggregation, sent)
    assert (refused.value.status, refused.value.code, refused.value.message) == (422, code, message)
    assert refused.value.details == [
        {
            "field": "quantity",
            "message": message.removeprefix("quantity: "),
            "type": FIELD_ERROR_TYPE[code],
        }
    ]


@pytest.mark.parametrize(
    "metadata",
    [None, {}, {"user": ""}, {"user": 42}, {"user": None}, {"user": ["a"]}, {"User": "a"}],
)
def test_a_unique_count_event_needs_its_property_as_a_string(metadata: dict[str, Any] | None) -> None:
    with pytest.raises(ValidationFailed) as refused:
        unique_value(VISITORS, metadata)
    assert refused.value.code == "unique_by_missing"
    assert refused.value.message.startswith("metadata.user: a visitors event needs a non-empty string")


def test_the_unique_value_is_the_property() -> None:
    assert unique_value(VISITORS, {"user": "u-1", "other": 2}) == "u-1"


def test_archived_meters_and_rejected_undeclared_metrics_take_no_events() -> None:
    archived = VISITORS.model_copy(update={"status": "archived"})
    with pytest.raises(ValidationFailed) as refused:
        refuse_unusable("visitors", archived, "accept")
    assert refused.value.code == "meter_archived"
    with pytest.raises(ValidationFailed) as refused:
        refuse_unusable("emails", None, "reject")
    assert refused.value.code == "unknown_metric"
    refuse_unusable("emails", None, "accept")
    logins = Meter(name="logins", aggregation="count", created_at="2026-12-01T00:00:00.000Z")
    refuse_unusable("logins", logins, "reject")
