"""dimensions' pure parts: a combination's key, query parsing, ranking and the CSV cell rule."""

from __future__ import annotations

from decimal import Decimal

import pytest

from usage_meter.domain import dimensions
from usage_meter.domain.dimensions import OTHER, GroupQuery, Groups, digest, parse_query, safe_cell
from usage_meter.errors import ValidationFailed
from usage_meter.models.records import GroupCounter


def test_a_combination_key_depends_on_its_values_not_their_order() -> None:
    assert digest({"a": "1", "b": "2"}) == digest({"b": "2", "a": "1"})
    assert digest({"a": "1", "b": "2"}) != digest({"a": "2", "b": "1"})
    assert digest({"a": "1,b"}) != digest({"a": "1", "b": ""})
    assert len(digest({"a": ""})) == 32


def test_filters_rejoin_values_holding_commas() -> None:
    query = parse_query("endpoint", ["endpoint:/a", "b", "model:x"])
    assert query == GroupQuery(group_by=("endpoint",), filters=(("endpoint", "/a,b"), ("model", "x")))
    assert query.matches({"endpoint": "/a,b", "model": "x"})
    assert not query.matches({"endpoint": "/a", "model": "x"})
    assert parse_query(None, None) == GroupQuery()


@pytest.mark.parametrize(
    ("group_by", "filters", "code"),
    [
        ("a,b,c,d", None, "too_many_dimensions"),
        ("a,", None, "invalid_group_by"),
        (None, ["b"], "invalid_filter"),
        (None, [":x"], "invalid_filter"),
        (None, ["a:1", "b:2", "c:3", "d:4"], "too_many_dimensions"),
    ],
)
def test_bad_queries_name_their_rule(group_by: str | None, filters: list[str] | None, code: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        parse_query(group_by, filters)
    assert refused.value.code == code


def counter(value: str, consumed: int) -> GroupCounter:
    return GroupCounter(
        metric="m", day="2026-11-25", values={"e": value}, consumed=Decimal(consumed), events=1
    )


def test_past_the_answers_bound_the_smallest_groups_join_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dimensions, "MAX_GROUPS", 2)
    groups = Groups()
    for value, consumed in (("a", 5), ("b", 9), (OTHER, 1), ("c", 2), ("d", 3)):
        groups.add((value,), counter(value, consumed))
    ranked = groups.ranked(("e",))
    assert [(g.dimensions["e"], g.consumed, g.events) for g in ranked] == [
        ("b", 9, 1),
        (OTHER, 6, 3),  # (other) 1 + c 2 + d 3
        ("a", 5, 1),
    ]
    assert sum(g.consumed for g in ranked) == groups.consumed == 20


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=cmd", "'=cmd"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("'q", "''q"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_formula_prefixes_are_quoted_and_the_rule_reverses(value: str, cell: str) -> None:
    assert safe_cell(value) == cell
    assert (cell[1:] if cell.startswith("'") else cell) == value
