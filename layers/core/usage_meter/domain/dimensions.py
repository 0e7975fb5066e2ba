"""Dimensions: usage of a meter counted per combination of metadata values, grouped and filtered.

A meter declares up to 3 dimensions (metadata keys). Each event of a dimensioned meter is also
counted in its day's counter of its combination of values (store/groups.py), in the event's
own transaction (see packing). A developer's meter takes at most the cardinality bound of
combinations a day; the events of any further combination count under "(other)" in every
dimension, so totals are never lost. Reads group a window's combination counters by some of
the dimensions, keep those that match a filter, and rank the groups largest first.

Only sum and count meters take dimensions: their counters are plain additions, so the groups
of a window add up exactly to its total (a max, a latest value, a distinct count or a level
of a group does not compose that way, and would need conditions per combination).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from usage_meter import jsonutil
from usage_meter.domain import meters as meter_domain
from usage_meter.domain.periods import day_key
from usage_meter.errors import ValidationFailed
from usage_meter.models.accounts import MAX_DIMENSIONS, Meter
from usage_meter.models.records import GroupCounter
from usage_meter.models.wire import METRIC_PATTERN, GroupOut, HistoryResponse
from usage_meter.store import groups as group_store

OTHER = "(other)"
"""The value of every dimension of the combination that takes a day's events past the bound."""
MAX_VALUE_LENGTH = 64
MAX_GROUPS = 1000
"""Groups in one answered entry besides "(other)"; any further ones are merged into it."""
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "'")
"""What a spreadsheet may take for the start of a formula: a CSV text cell starting with one
gets a single quote in front (OWASP's advice against CSV injection). A cell that starts with a
quote gets one too, so the rule reverses: drop the first ' of a text cell that starts with one."""

_NAME = re.compile(METRIC_PATTERN)


def _refused(code: str, field_name: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field_name}: {message}",
        code=code,
        details=[{"field": field_name, "message": message, "type": code}],
    )


# ---- events --------------------------------------------------------------------------------


def event_values(meter: Meter | None, metadata: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The combination an event of `meter` is counted under: each dimension's metadata value (a
    string of at most 64 characters; a missing key counts as ""). None for a meter without
    dimensions."""
    if meter is None or not meter.dimensions:
        return None
    values: dict[str, str] = {}
    for name in meter.dimensions:
        value = (metadata or {}).get(name, "")
        where = f"metadata.{name}"
        if not isinstance(value, str):
            raise _refused("invalid_dimension_value", where, f"a {meter.name} dimension value is a string")
        if len(value) > MAX_VALUE_LENGTH:
            raise _refused(
                "invalid_dimension_value",
                where,
                f"a dimension value is at most {MAX_VALUE_LENGTH} characters",
            )
        if value == OTHER:
            raise _refused("invalid_dimension_value", where, f'"{OTHER}" is reserved for the overflow group')
        values[name] = value
    return values


def digest(values: Mapping[str, str]) -> str:
    """The key of a combination: sha256 of its values by dimension name, 32 hex characters."""
    canonical = jsonutil.dumps({name: values[name] for name in sorted(values)})
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def overflow(values: Mapping[str, str]) -> dict[str, str]:
    """The combination a day's events past the bound count under."""
    return dict.fromkeys(values, OTHER)


# ---- queries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupQuery:
    """What a reader asked: the dimensions to group by (in order) and the values to keep."""

    group_by: tuple[str, ...] = ()
    filters: tuple[tuple[str, str], ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.group_by or self.filters)

    @property
    def named(self) -> set[str]:
        return {*self.group_by, *(name for name, _ in self.filters)}

    def matches(self, values: Mapping[str, str]) -> bool:
        return all(values.get(name, "") == wanted for name, wanted in self.filters)

    def project(self, values: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(values.get(name, "") for name in self.group_by)


def parse_query(group_by: str | None, filters: Iterable[str] | None) -> GroupQuery:
    """`groupBy=endpoint,model` and `filter=endpoint:/v1/verify` (repeatable) as a GroupQuery;
    422 invalid_group_by, too_many_dimensions or invalid_filter."""
    names = tuple(n.strip() for n in group_by.split(",")) if group_by is not None else ()
    for name in names:
        if not _NAME.match(name):
            raise _refused("invalid_group_by", "groupBy", f"{name!r} is not a dimension name")
    if len(set(names)) != len(names):
        raise _refused("invalid_group_by", "groupBy", "a dimension is named twice")
    if len(names) > MAX_DIMENSIONS:
        raise _refused("too_many_dimensions", "groupBy", f"at most {MAX_DIMENSIONS} dimensions")
    kept: dict[str, str] = {}
    for text in _rejoined(filters or ()):
        name, colon, value = text.partition(":")
        if not colon or not _NAME.match(name) or len(value) > MAX_VALUE_LENGTH:
            raise _refused(
                "invalid_filter",
                "filter",
                f"{text[:80]!r} is not DIMENSION:VALUE (a value of at most {MAX_VALUE_LENGTH} characters)",
            )
        if name in kept:
            raise _refused("invalid_filter", "filter", f"{name} is filtered twice (one value per dimension)")
        kept[name] = value
    if len(kept) > MAX_DIMENSIONS:
        raise _refused("too_many_dimensions", "filter", f"at most {MAX_DIMENSIONS} dimensions")
    return GroupQuery(group_by=names, filters=tuple(kept.items()))


def _rejoined(pieces: Iterable[str]) -> list[str]:
    """Filters as sent: API Gateway joins repeated parameters with commas and the resolver splits
    them again, so a piece without a colon is the rest of the previous value (a value may hold
    a comma, but not a comma followed by a NAME:)."""
    joined: list[str] = []
    for piece in pieces:
        if ":" not in piece and joined:
            joined[-1] = f"{joined[-1]},{piece}"
        else:
            joined.append(piece)
    return joined


def grouped_meters(query: GroupQuery, metric: str | None) -> dict[str, Meter]:
    """The meters a query groups (every one that declares each dimension it names; only
    `metric`'s when given); 422 unknown_dimension when there is none."""
    found = {
        m.name: m
        for m in meter_domain.meters()
        if query.named <= set(m.dimensions) and (metric is None or m.name == metric)
    }
    if not found:
        subject = f"meter {metric}" if metric else "no meter"
        declares = "does not declare" if metric else "declares"
        raise _refused(
            "unknown_dimension",
            "groupBy" if query.group_by else "filter",
            f"{subject} {declares} {', '.join(sorted(query.named))} (GET /v1/meters lists the dimensions)",
        )
    return found


# ---- grouped reads -------------------------------------------------------------------------


@dataclass
class Groups:
    """One metric's figures in one step of a grouped read: its matching total and its groups."""

    consumed: Decimal = Decimal(0)
    events: int = 0
    by: dict[tuple[str, ...], list[Any]] = field(default_factory=dict)  # projection -> [consumed, events]

    def add(self, projection: tuple[str, ...], counter: GroupCounter) -> None:
        self.consumed += counter.consumed
        self.events += counter.events
        slot = self.by.setdefault(projection, [Decimal(0), 0])
        slot[0] += counter.consumed
        slot[1] += counter.events

    def ranked(self, group_by: tuple[str, ...]) -> list[GroupOut]:
        """The groups, largest first (then most events, then by value): at most MAX_GROUPS and
        "(other)", into which the smallest beyond them are merged."""
        order = sorted(self.by.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))
        rest = (OTHER,) * len(group_by)
        named = [kv for kv in order if kv[0] != rest]
        if len(named) > MAX_GROUPS:
            kept = {projection for projection, _ in named[:MAX_GROUPS]}
            merged = [Decimal(0), 0]
            for projection, (consumed, events) in order:
                if projection not in kept:
                    merged[0] += consumed
                    merged[1] += events
            order = sorted(
                [*named[:MAX_GROUPS], (rest, merged)], key=lambda kv: (-kv[1][0], -kv[1][1], kv[0])
            )
        return [
            GroupOut(dimensions=dict(zip(group_by, projection, strict=True)), consumed=c, events=e)
            for projection, (c, e) in order
        ]


StepOf = Callable[[str], str]


def read_groups(
    developer_id: str, query: GroupQuery, metrics: Iterable[str], first: date, last: date, step_of: StepOf
) -> dict[str, dict[str, Groups]]:
    """metric -> step -> Groups of the combination counters from `first` to `last` that match
    the query's filter: one paginated Query per metric. `step_of` maps a day to its step."""
    answer: dict[str, dict[str, Groups]] = {}
    for metric in metrics:
        steps = answer.setdefault(metric, {})
        for counter in group_store.group_counters(developer_id, metric, day_key(first), day_key(last)):
            if query.matches(counter.values):
                steps.setdefault(step_of(counter.day), Groups()).add(query.project(counter.values), counter)
    return answer


def breakdown(
    developer_id: str,
    metric: str,
    first: date,
    last: date,
    group_by: Iterable[str],
    filters: Mapping[str, str] | None = None,
) -> list[GroupOut]:
    """One meter's usage from `first` to `last` grouped by some of its dimensions (only the
    events whose values match `filters`), largest first, at most MAX_GROUPS and "(other)": one
    paginated Query. For presenters (e.g. Glyphnet's `breakdown` by endpoint); the caller
    names dimensions its meter declares (an undeclared one reads as "" everywhere)."""
    query = GroupQuery(group_by=tuple(group_by), filters=tuple((filters or {}).items()))
    steps = read_groups(developer_id, query, [metric], first, last, lambda _: "")[metric]
    return steps[""].ranked(query.group_by) if "" in steps else []


# ---- CSV -----------------------------------------------------------------------------------


def safe_cell(text: str) -> str:
    """A text cell a spreadsheet shows as text: a leading formula character gets a ' before it."""
    return f"'{text}" if text.startswith(FORMULA_PREFIXES) else text


def history_csv(answer: HistoryResponse, group_by: tuple[str, ...]) -> str:
    """A history as RFC 4180 CSV (CRLF line ends, fields with a comma, quote or line break
    quoted): `date,metric,<dimension…>,consumed,events`, a row per step, metric and group (a
    metric that is not grouped: one row, its dimension cells empty). Text cells are made safe
    to open in a spreadsheet (safe_cell); numbers are written exactly."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["date", "metric", *(safe_cell(n) for n in group_by), "consumed", "events"])
    for entry in answer.entries:
        for metric in sorted(entry.metrics):
            groups = (entry.groups or {}).get(metric)
            if groups is None:
                events = (entry.events or {}).get(metric, 0)
                row = [entry.date, safe_cell(metric), *([""] * len(group_by))]
                writer.writerow([*row, jsonutil.number_text(entry.metrics[metric]), events])
                continue
            for group in groups:
                cells = [safe_cell(group.dimensions.get(n, "")) for n in group_by]
                writer.writerow(
                    [
                        entry.date,
                        safe_cell(metric),
                        *cells,
                        jsonutil.number_text(group.consumed),
                        group.events,
                    ]
                )
    return out.getvalue()
