"""`usage-meter usage show|history` and `usage-meter rollup run`: reading usage, closing months.

The usage views are drawn by `views` with rich, imported only when a view is drawn:
`--json` prints the API's own answer and needs no rich.
"""

from __future__ import annotations

import argparse
import re
from datetime import date
from typing import TYPE_CHECKING, Any

from usage_meter import jsonutil
from usage_meter.domain import clock, meters, rollup, usage
from usage_meter.domain.dimensions import parse_query
from usage_meter.domain.plans import get_plan
from usage_meter.models.records import RollupReport, RollupRequest
from usage_meter.models.wire import METRIC_PATTERN
from usage_meter_admin.common import CliError, Handler, command, emit, emitted_json, service, subcommands

if TYPE_CHECKING:
    from rich.console import Console


def day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def metric(text: str) -> str:
    if not re.fullmatch(METRIC_PATTERN, text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a metric name")
    return text


def history_days(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= usage.MAX_RANGE_DAYS:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of days from 1 to {usage.MAX_RANGE_DAYS}")
    return int(text)


def report_text(report: RollupReport) -> str:
    lines = [
        f"rolled up {report.first_day}..{report.last_day} ({report.days} days, "
        f"{', '.join(report.months)}): {report.developers} developer(s), "
        f"{report.developer_months} developer-month(s), {report.summaries} summaries "
        f"({report.summaries_written} written, {report.summaries_unchanged} unchanged), "
        f"drift {report.drift}, failed {report.failed}, {report.duration_ms} ms",
        *(
            f"drift: {d.developer_id} {d.month} {d.metric}: month counter "
            f"{jsonutil.number_text(d.month_counter)}, day sum {jsonutil.number_text(d.day_sum)} "
            f"(difference {jsonutil.number_text(d.difference)}, events {d.events_difference:+d})"
            for d in report.drifts
        ),
    ]
    if report.drift > len(report.drifts):
        lines.append(f"drift: … and {report.drift - len(report.drifts)} more (see the log)")
    return "\n".join(lines)


def _rollup_run(args: argparse.Namespace) -> None:
    report = rollup.run(RollupRequest(date=args.date))
    emit(args, report.wire(), report_text(report))
    if report.failed:
        raise CliError(f"{report.failed} developer-month(s) failed; run it again (it is idempotent)")


def _console() -> Console:
    from usage_meter_admin import views  # rich is needed by these views only

    try:
        return views.make_console()
    except ImportError:
        raise CliError(
            "the usage views need rich (pip install 'rich>=13'); --json works without it"
        ) from None


def _usage_show(args: argparse.Namespace) -> None:
    response = usage.current_usage(
        service(args.developer),
        developer_id=args.developer,
        metric=args.metric,
        period=args.period,
        query=parse_query(args.group_by, args.filter),
    )
    if emitted_json(args, response.wire()):
        return
    from usage_meter_admin import views

    units = {m.name: m.unit for m in meters.meters() if m.unit and m.name in response.metrics}
    console = _console()
    views.render_current(console, response, get_plan(response.plan) if response.plan else None, units)
    views.render_groups(console, response, units)


def _check_history_range(args: argparse.Namespace) -> None:
    """The range checks of GET /v1/usage/history, made here first so that a refusal names the
    CLI's flags (--start-date), not the API's query parameters (startDate)."""
    if args.days is not None and (args.start_date or args.end_date):
        raise CliError("use either --days or --start-date/--end-date")
    if args.start_date is None:
        if args.end_date:
            raise CliError("--end-date needs --start-date")
        return
    for flag, value in (("--start-date", args.start_date), ("--end-date", args.end_date)):
        if value is not None and not usage.FIRST_DATE <= value <= usage.LAST_DATE:
            raise CliError(f"{flag} {value}: dates run from {usage.FIRST_DATE} to {usage.LAST_DATE}")
    last = args.end_date or clock.now().date()
    if last < args.start_date:
        if args.end_date is None:
            raise CliError(f"--start-date {args.start_date} is after today ({last}, the default --end-date)")
        raise CliError("--end-date is before --start-date")
    if (last - args.start_date).days + 1 > usage.MAX_RANGE_DAYS:
        raise CliError(f"--start-date to --end-date covers more than {usage.MAX_RANGE_DAYS} days")


def _usage_history(args: argparse.Namespace) -> None:
    _check_history_range(args)
    response = usage.usage_history(
        service(args.developer),
        developer_id=args.developer,
        metric=args.metric,
        days=args.days,
        start_date=args.start_date,
        end_date=args.end_date,
        granularity=args.granularity,
    )
    if emitted_json(args, response.wire()):
        return
    from usage_meter_admin import views

    views.render_history(_console(), response, args.metric)


def add_rollup_commands(groups: Any) -> None:
    doc = "roll up month summaries now: the scheduled window (the last 36 days), or --date's month"
    run = command(subcommands(groups, "rollup", "month summaries"), "run", _rollup_run, doc)
    run.add_argument(
        "--date", type=day, metavar="YYYY-MM-DD", help="roll up the whole month of this day instead"
    )


def _view(usages: Any, name: str, handler: Handler, doc: str) -> argparse.ArgumentParser:
    """A usage view: of one developer, named by --developer."""
    view = command(usages, name, handler, doc)
    view.add_argument("--developer", required=True, metavar="DEVELOPER_ID")
    return view


def add_usage_commands(groups: Any) -> None:
    usages = subcommands(groups, "usage", "a developer's usage")
    show = _view(
        usages,
        "show",
        _usage_show,
        "a developer's usage of the billing period (or --period): a table per metric with its limit",
    )
    show.add_argument("--metric", type=metric, help="this metric only")
    show.add_argument(
        "--period", choices=["day", "week", "month"], help="today, this ISO week or this month (default)"
    )
    show.add_argument(
        "--group-by",
        metavar="DIMENSION[,DIMENSION]",
        help="also each group of the meters declaring these dimensions, one bar per group",
    )
    show.add_argument(
        "--filter",
        action="append",
        metavar="DIMENSION:VALUE",
        help="only the events with this value (repeatable, one per dimension)",
    )
    history = _view(
        usages,
        "history",
        _usage_history,
        "a developer's daily (or monthly) totals with a bar chart: events, or --metric's quantity",
    )
    history.add_argument(
        "--days", type=history_days, help=f"the last N days (default {usage.DEFAULT_HISTORY_DAYS})"
    )
    history.add_argument("--start-date", type=day, metavar="YYYY-MM-DD", help="first day, inclusive")
    history.add_argument(
        "--end-date", type=day, metavar="YYYY-MM-DD", help="last day, inclusive (default today)"
    )
    history.add_argument("--metric", type=metric, help="this metric's quantity instead of events")
    history.add_argument("--granularity", choices=["day", "month"], default="day")
