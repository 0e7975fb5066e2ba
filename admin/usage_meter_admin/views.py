"""Terminal views of usage for the admin CLI: `usage-meter usage show` and `usage history`.

Rendered with rich rather than a plotting library: rich's tables align columns and colour
cells on a terminal and degrade to plain text (no escape codes) when the output is a pipe or
a file, and a Console can render at a fixed width, which keeps the output stable for
snapshot tests. Bars are block characters (down to an eighth of a cell) in a table column,
so the chart is just another column of the table and needs nothing more.

rich is a dependency of the CLI only: this module imports it inside its functions, and
nothing but the CLI imports this module, so the Lambda functions (and the layer) never need
it. Numbers are printed exactly as the domain gives them (Decimals, never floats), with
thousands separators.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from usage_meter import jsonutil
from usage_meter.models.accounts import Plan
from usage_meter.models.wire import CurrentUsageResponse, HistoryResponse, MetricUsage

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

PERCENT_BAR_WIDTH = 20  # cells for 0..100 %, at most (fewer on a narrow console)
HISTORY_BAR_WIDTH = 40  # cells for the largest value of the history, at most
MIN_BAR_WIDTH = 5  # narrower than this, the bar column is left out
_GAP = 2  # between two columns of a table: padding and divider (the paddings collapse)
NONE = "—"
_EIGHTHS = " ▏▎▍▌▋▊▉"  # a cell filled to 0/8 .. 7/8
_FULL = "█"


def make_console() -> Console:
    """The Console the CLI prints with: a terminal gets colour and its width, a pipe plain text.

    Tests replace this factory with one of a fixed width and no colour.
    """
    from rich.console import Console

    return Console(highlight=False, emoji=False)


def number(value: Decimal | int) -> str:
    """An exact number with thousands separators: 1234567.5 -> 1,234,567.5 (no float on the way)."""
    return format(Decimal(jsonutil.number_text(Decimal(value))), ",f")


def percent(value: Decimal) -> str:
    """A percentage as the domain gives it (two decimals), with thousands separators."""
    return format(value, ",f") + " %"


def bar(value: Decimal, scale: Decimal, width: int) -> str:
    """`width` cells for `scale`, filled in eighths of a cell, rounded half up.

    Zero (or a zero scale) is an empty bar; any positive value gets at least one eighth, so a
    tiny value never looks like none. Values past the scale fill the whole bar.
    """
    if value <= 0 or scale <= 0:
        return ""
    eighths = int((value * width * 8 / scale).to_integral_value(rounding=ROUND_HALF_UP))
    eighths = min(max(eighths, 1), width * 8)
    full, part = divmod(eighths, 8)
    return _FULL * full + (_EIGHTHS[part] if part else "")


def _grid(rows: list[tuple[str, Text | str]]) -> Table:
    """The header: a two-column grid of labels and values."""
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, value in rows:
        grid.add_row(label, value)
    return grid


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _period_text(key: str, start: str, end: str) -> str:
    """`2026-11 (2026-11-01 to 2026-11-30)`: the end is exclusive on the wire, inclusive here."""
    first = date.fromisoformat(start[:10])
    last = date.fromisoformat(end[:10]) - timedelta(days=1)
    if first == last:
        return key
    if ".." in key:  # a date range names its days already
        return f"{first.isoformat()} to {last.isoformat()}"
    return f"{key} ({first.isoformat()} to {last.isoformat()})"


def _usage_style(percentage: Decimal) -> str:
    if percentage >= 100:
        return "red"
    return "yellow" if percentage >= 80 else "green"


def _enforcement(name: str, usage: MetricUsage, plan: Plan | None) -> str:
    allowance = plan.metrics.get(name) if plan else None
    if allowance is None:
        return "not in plan"  # counted without limit; its entitlement is hasAccess: false
    return NONE if usage.limit is None else allowance.enforcement


def _bar_width(console: Console, columns: list[list[str]], preferred: int) -> int:
    """The bar column's width: `preferred` cells, fewer when the other columns (their header,
    cells and footer texts) and the gaps between them leave less of the console's width, and
    none (no bar column) below MIN_BAR_WIDTH: numbers are never squeezed to make room for bars."""
    from rich.cells import cell_len

    used = sum(max(cell_len(line) for text in column for line in text.split("\n")) for column in columns)
    width = min(preferred, console.width - used - _GAP * len(columns))
    return width if width >= MIN_BAR_WIDTH else 0


def consumed_text(usage: MetricUsage, unit: str | None = None) -> str:
    """A metric's consumption as the table shows it: a level against its ceiling reads
    "37 of 500 agents", anything else its number (and unit)."""
    amount = number(usage.consumed)
    if usage.aggregation == "level" and usage.limit is not None:
        amount = f"{amount} of {number(usage.limit)}"
    return f"{amount} {unit}" if unit else amount


def render_current(
    console: Console,
    response: CurrentUsageResponse,
    plan: Plan | None,
    units: Mapping[str, str] | None = None,
) -> None:
    """`usage show`: a header (developer, plan, period, reset, requests, rate limit) and one row
    per metric with its limit, what remains, the percentage used as a number and a bar, and
    the plan's enforcement. Unlimited metrics show "unlimited" and dashes; a level shows where
    it stands against its ceiling, in its meter's unit (`units`)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    rate = response.rate_limit
    rate_text = (
        NONE
        if rate.requests_per_minute is None
        else f"{number(rate.requests_per_minute)}/min ({number(rate.current_minute_usage)} in the current minute)"
    )
    period = response.period
    console.print(
        _grid(
            [
                ("developer", Text(response.developer_id)),
                ("plan", Text(response.plan or NONE)),
                ("period", _period_text(period.key, period.start, period.end)),
                ("resets in", _days(response.resets_in_days)),
                ("requests", number(response.total_requests)),
                ("rate limit", rate_text),
            ]
        )
    )
    console.print()

    headers = ["metric", "consumed", "limit", "remaining", "used %"]
    rows = [
        [
            name,
            consumed_text(u, (units or {}).get(name)),
            "unlimited" if u.limit is None else number(u.limit),
            NONE if u.remaining is None else number(u.remaining),
            NONE if u.percentage_used is None else percent(u.percentage_used),
            _enforcement(name, u, plan),
        ]
        for name, u in response.metrics.items()
    ]
    columns = [[header, *(row[i] for row in rows)] for i, header in enumerate(headers)]
    columns.append(["enforcement", *(row[5] for row in rows)])
    width = _bar_width(console, columns, PERCENT_BAR_WIDTH)

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("metric", overflow="fold")
    for header in headers[1:]:
        table.add_column(header, justify="right", overflow="fold")
    if width:
        table.add_column("", width=width, no_wrap=True)
    table.add_column("enforcement", overflow="fold")
    for row, usage in zip(rows, response.metrics.values(), strict=True):
        used = usage.percentage_used
        gauge = Text("") if used is None else Text(bar(used, Decimal(100), width), style=_usage_style(used))
        table.add_row(Text(row[0]), *row[1:5], *([gauge] if width else []), row[5])
    console.print(table)
    if not re.fullmatch(r"\d{4}-\d{2}", period.key):  # a day, a week or a range, not a billing month
        console.print(
            f"consumed covers {period.key}; limit, remaining and used % describe the billing period"
        )


def render_groups(
    console: Console, response: CurrentUsageResponse, units: Mapping[str, str] | None = None
) -> None:
    """`usage show --group-by`: per grouped metric, one row per group (largest first) with its
    consumption, its events, its share of the metric and a bar scaled to the largest group."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    for name, usage in response.metrics.items():
        if usage.groups is None:
            continue
        console.print()
        unit = (units or {}).get(name)
        console.print(Text(f"{name} by {', '.join(_group_names(usage))}" + (f" ({unit})" if unit else "")))
        labels = [", ".join(g.dimensions.values()) or '""' for g in usage.groups]
        figures = [number(g.consumed) for g in usage.groups]
        largest = max((g.consumed for g in usage.groups), default=Decimal(0))
        width = _bar_width(
            console, [["group", *labels], ["consumed", *figures], ["events"], ["share"]], HISTORY_BAR_WIDTH
        )
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
        table.add_column("group", overflow="fold")
        for header in ("consumed", "events", "share"):
            table.add_column(header, justify="right", overflow="fold")
        if width:
            table.add_column("", width=width, no_wrap=True)
        for label, figure, group in zip(labels, figures, usage.groups, strict=True):
            share = (
                percent((group.consumed * 100 / usage.consumed).quantize(Decimal("0.01")))
                if usage.consumed
                else NONE
            )
            cells: list[Text | str] = [Text(label), figure, number(group.events), share]
            table.add_row(
                *cells, *([Text(bar(group.consumed, largest, width), style="cyan")] if width else [])
            )
        if not usage.groups:
            table.add_row(Text(NONE), "0", "0", NONE, *([""] if width else []))
        console.print(table)


def _group_names(usage: MetricUsage) -> list[str]:
    return list(usage.groups[0].dimensions) if usage.groups else []


def history_values(response: HistoryResponse, metric: str | None) -> list[tuple[str, Decimal]]:
    """(date, value) per entry: the metric's consumed quantity, or the step's events without one."""
    return [
        (
            entry.date,
            entry.metrics.get(metric, Decimal(0)) if metric else Decimal(entry.total_requests),
        )
        for entry in response.entries
    ]


def render_history(console: Console, response: HistoryResponse, metric: str | None) -> None:
    """`usage history`: one row per day (or month), its total and a bar scaled to the largest
    total; zero steps keep their row with an empty bar. A footer gives the sum and the max.

    Without a metric the total is the step's events (`totalRequests`, every metric); with
    one it is the quantity of that metric consumed."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    values = history_values(response, metric)
    total = sum((v for _, v in values), Decimal(0))
    peak_date, peak = max(values, key=lambda dv: dv[1], default=("", Decimal(0)))
    steps = "days" if response.granularity == "day" else "months"
    span = f"{values[0][0]} to {values[-1][0]}" if values else NONE
    console.print(
        _grid(
            [
                ("developer", Text(response.developer_id)),
                ("history", f"{span}, by {response.granularity} ({len(values)} {steps})"),
                ("total", Text(f"{metric} consumed") if metric else "events (every metric)"),
            ]
        )
    )
    console.print()

    dates = ["date", "sum\nmax", *(step for step, _ in values)]
    totals = [metric or "events", f"{number(total)}\n{number(peak)}", *(number(v) for _, v in values)]
    width = _bar_width(console, [dates, totals], HISTORY_BAR_WIDTH)

    table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False, collapse_padding=True, show_footer=True)
    table.add_column(dates[0], footer=dates[1], overflow="fold")
    table.add_column(totals[0], footer=totals[1], justify="right", overflow="fold")
    if width:
        table.add_column("", footer=f"\non {peak_date}" if peak > 0 else "", width=width, no_wrap=True)
    for (step, value), text in zip(values, totals[2:], strict=True):
        table.add_row(step, text, *([Text(bar(value, peak, width), style="cyan")] if width else []))
    console.print(table)
    if response.granularity == "month":
        console.print("a month counts only the days of the range")


def render_table(console: Console, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A listing (`developers list`, `keys list`, …) on a terminal: bold headers over aligned
    columns; cells are shown as given (no markup)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    if not rows:
        console.print("(none)")
        return
    table = Table(
        box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True, header_style="bold"
    )
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)
