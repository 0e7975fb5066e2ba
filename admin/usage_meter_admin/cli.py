"""`usage-meter`: the admin CLI for developers, API keys and plans, on-demand rollups, and
usage views (a developer's current usage and history, rendered by `views`).

argparse rather than a CLI framework: it ships with Python, so the CLI adds nothing to the
Lambda layer and runs wherever boto3 does. Tables come from --stack-name (the stack's
outputs), from the environment (USAGE_TABLE, IDEMPOTENCY_TABLE, ACCOUNTS_TABLE) or from
their logical names; --endpoint-url points it at DynamoDB Local.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from pydantic import ValidationError

from usage_meter import jsonutil
from usage_meter.domain import accounts, rollup, usage
from usage_meter.domain.plans import get_plan
from usage_meter.errors import UsageMeterError
from usage_meter.models.accounts import ApiKeyRecord, Developer, Identity, MetricLimit, Plan
from usage_meter.models.records import RollupReport, RollupRequest
from usage_meter.models.wire import METRIC_PATTERN
from usage_meter.store import accounts as account_store
from usage_meter.store import dynamodb as store_db

if TYPE_CHECKING:
    from rich.console import Console

_STACK_OUTPUTS = {
    "UsageTableName": "USAGE_TABLE",
    "IdempotencyTableName": "IDEMPOTENCY_TABLE",
    "AccountsTableName": "ACCOUNTS_TABLE",
}


class CliError(Exception):
    """A message for the user; exit code 1."""


def _print(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(jsonutil.dumps(payload) if args.json else text)


def _developer_line(d: Developer) -> str:
    return f"{d.developer_id}\t{d.plan}\t{d.created_at}\t{d.name}"


def _key_line(k: ApiKeyRecord) -> str:
    return f"{k.key_id}\t{k.prefix}…\t{k.role}\t{k.status}\t{k.created_at}\t{k.last_used_at or '-'}"


def _plan_line(p: Plan) -> str:
    limits = ", ".join(
        f"{metric}={'unlimited' if m.limit is None else jsonutil.number_text(m.limit)} ({m.enforcement})"
        for metric, m in sorted(p.metrics.items())
    )
    return f"{p.name}\t{p.requests_per_minute or '-'}/min\t{limits}"


def _developers_create(args: argparse.Namespace) -> None:
    developer = accounts.create_developer(args.name, args.plan, args.id)
    _print(args, developer.model_dump(), f"created developer {developer.developer_id} ({developer.plan})")


def _developers_list(args: argparse.Namespace) -> None:
    developers = sorted(account_store.list_developers(), key=lambda d: d.developer_id)
    _print(
        args, [d.model_dump() for d in developers], "\n".join(map(_developer_line, developers)) or "(none)"
    )


def _developers_show(args: argparse.Namespace) -> None:
    developer = accounts.get_developer(args.developer_id)
    keys = accounts.list_keys(args.developer_id)
    text = "\n".join([_developer_line(developer), "keys:", *("  " + _key_line(k) for k in keys)])
    _print(args, {**developer.model_dump(), "keys": [k.model_dump(exclude={"key_hash"}) for k in keys]}, text)


def _keys_create(args: argparse.Namespace) -> None:
    created = accounts.create_key(args.developer_id, args.role)
    record = created.record
    _print(
        args,
        {"key": created.key, **record.model_dump(exclude={"key_hash"})},
        f"{created.key}\n(key {record.key_id}, role {record.role}, developer {record.developer_id}: "
        "store it now, it is not shown again)",
    )


def _keys_list(args: argparse.Namespace) -> None:
    keys = accounts.list_keys(args.developer_id)
    _print(
        args, [k.model_dump(exclude={"key_hash"}) for k in keys], "\n".join(map(_key_line, keys)) or "(none)"
    )


def _keys_revoke(args: argparse.Namespace) -> None:
    key = accounts.revoke_key(args.developer_id, args.key_id)
    _print(
        args,
        key.model_dump(exclude={"key_hash"}),
        f"revoked {key.key_id} ({key.prefix}…); it stops working within 60 seconds",
    )


def _plans_list(args: argparse.Namespace) -> None:
    plans = accounts.plans()
    _print(args, [p.model_dump() for p in plans], "\n".join(map(_plan_line, plans)))


def _plans_set(args: argparse.Namespace) -> None:
    developer = accounts.set_plan(args.developer_id, args.plan)
    _print(args, developer.model_dump(), f"{developer.developer_id} is now on plan {developer.plan}")


def _parse_allowance(text: str) -> tuple[str, MetricLimit]:
    """`metric=LIMIT[:soft|hard]` or `metric=unlimited`."""
    metric, sep, rest = text.partition("=")
    if not sep or not re.fullmatch(METRIC_PATTERN, metric):
        raise CliError(f"--metric {text!r}: expected METRIC=LIMIT[:soft|hard] or METRIC=unlimited")
    amount, _, enforcement = rest.partition(":")
    if enforcement not in ("", "soft", "hard"):
        raise CliError(f"--metric {text!r}: enforcement is soft or hard")
    if amount == "unlimited":
        return metric, MetricLimit(limit=None, enforcement="soft")
    try:
        limit = Decimal(amount)
    except InvalidOperation:
        raise CliError(f"--metric {text!r}: {amount!r} is not a number") from None
    if not limit.is_finite() or limit < 0:
        raise CliError(f"--metric {text!r}: the limit must be a number >= 0")
    return metric, MetricLimit(limit=limit, enforcement=enforcement or "hard")


def _plans_put(args: argparse.Namespace) -> None:
    metrics = dict(_parse_allowance(text) for text in args.metric or [])
    plan = accounts.put_plan(
        Plan(name=args.name, metrics=metrics, requests_per_minute=args.requests_per_minute)
    )
    _print(args, plan.model_dump(), f"stored plan {_plan_line(plan)}")


def _plans_seed(args: argparse.Namespace) -> None:
    added = accounts.seed_default_plans()
    _print(args, [p.name for p in added], f"stored {len(added)} default plan(s)")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _report_text(report: RollupReport) -> str:
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
    _print(args, report.wire(), _report_text(report))
    if report.failed:
        raise CliError(f"{report.failed} developer-month(s) failed; run it again (it is idempotent)")


def _metric(text: str) -> str:
    if not re.fullmatch(METRIC_PATTERN, text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a metric name")
    return text


def _history_days(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= usage.MAX_RANGE_DAYS:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of days from 1 to {usage.MAX_RANGE_DAYS}")
    return int(text)


def _service(developer_id: str) -> Identity:
    """The CLI reads as the provider's backend does: a service identity naming the developer,
    so an unknown developer is an error, as with a service key."""
    return Identity(developer_id=developer_id, role="service")


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
        _service(args.developer), developer_id=args.developer, metric=args.metric, period=args.period
    )
    if args.json:
        print(jsonutil.dumps(response.wire()))
        return
    from usage_meter_admin import views

    views.render_current(_console(), response, get_plan(response.plan) if response.plan else None)


def _usage_history(args: argparse.Namespace) -> None:
    if args.days is not None and (args.start_date or args.end_date):
        raise CliError("use either --days or --start-date/--end-date")
    if args.end_date and not args.start_date:
        raise CliError("--end-date needs --start-date")
    if args.start_date and args.end_date and args.end_date < args.start_date:
        raise CliError("--end-date is before --start-date")
    response = usage.usage_history(
        _service(args.developer),
        developer_id=args.developer,
        metric=args.metric,
        days=args.days,
        start_date=args.start_date,
        end_date=args.end_date,
        granularity=args.granularity,
    )
    if args.json:
        print(jsonutil.dumps(response.wire()))
        return
    from usage_meter_admin import views

    views.render_history(_console(), response, args.metric)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usage-meter", description="Administer Usage Meter.")
    parser.add_argument(
        "--endpoint-url", help="DynamoDB endpoint (DynamoDB Local), e.g. http://127.0.0.1:8000"
    )
    parser.add_argument("--region", help="AWS region (default: from the environment)")
    parser.add_argument("--stack-name", help="read table names from this CloudFormation stack's outputs")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    groups = parser.add_subparsers(dest="group", required=True)

    def command(group: Any, name: str, handler: Callable[[argparse.Namespace], None], doc: str) -> Any:
        sub = group.add_parser(name, help=doc, description=doc)
        sub.set_defaults(handler=handler)
        return sub

    developers = groups.add_parser("developers", help="developers").add_subparsers(
        dest="command", required=True
    )
    create = command(developers, "create", _developers_create, "create a developer")
    create.add_argument("--name", required=True)
    create.add_argument("--plan", default="free")
    create.add_argument("--id", help="developer id (default: a generated dev_… id)")
    command(developers, "list", _developers_list, "list developers")
    command(developers, "show", _developers_show, "show a developer and its keys").add_argument(
        "developer_id"
    )

    keys = groups.add_parser("keys", help="API keys").add_subparsers(dest="command", required=True)
    key_create = command(keys, "create", _keys_create, "create an API key (printed once)")
    key_create.add_argument("developer_id")
    key_create.add_argument("--role", choices=["developer", "service"], default="developer")
    command(keys, "list", _keys_list, "list a developer's keys").add_argument("developer_id")
    revoke = command(keys, "revoke", _keys_revoke, "revoke a key")
    revoke.add_argument("developer_id")
    revoke.add_argument("key_id")

    plans = groups.add_parser("plans", help="plans").add_subparsers(dest="command", required=True)
    command(plans, "list", _plans_list, "list plans and their limits")
    plan_set = command(plans, "set", _plans_set, "put a developer on a plan (applies to its next request)")
    plan_set.add_argument("developer_id")
    plan_set.add_argument("plan")
    command(plans, "seed", _plans_seed, "store the default plans that are not stored yet")
    put = command(plans, "put", _plans_put, "create or replace a plan (applies to the next request)")
    put.add_argument("name")
    put.add_argument(
        "--metric",
        action="append",
        metavar="METRIC=LIMIT[:soft|hard]",
        help="a metric's limit per billing period (hard by default) or METRIC=unlimited; repeatable",
    )
    put.add_argument("--requests-per-minute", type=int, help="the plan's request rate (reported)")

    rollups = groups.add_parser("rollup", help="month summaries").add_subparsers(
        dest="command", required=True
    )
    rollup_run = command(
        rollups,
        "run",
        _rollup_run,
        "roll up month summaries now: the scheduled window (the last 36 days), or --date's month",
    )
    rollup_run.add_argument(
        "--date", type=_day, metavar="YYYY-MM-DD", help="roll up the whole month of this day instead"
    )

    usages = groups.add_parser("usage", help="a developer's usage").add_subparsers(
        dest="command", required=True
    )
    show = command(
        usages,
        "show",
        _usage_show,
        "a developer's usage of the billing period (or --period): a table per metric with its limit",
    )
    show.add_argument("--developer", required=True, metavar="DEVELOPER_ID")
    show.add_argument("--metric", type=_metric, help="this metric only")
    show.add_argument(
        "--period", choices=["day", "week", "month"], help="today, this ISO week or this month (default)"
    )
    history = command(
        usages,
        "history",
        _usage_history,
        "a developer's daily (or monthly) totals with a bar chart: events, or --metric's quantity",
    )
    history.add_argument("--developer", required=True, metavar="DEVELOPER_ID")
    history.add_argument(
        "--days", type=_history_days, help=f"the last N days (default {usage.DEFAULT_HISTORY_DAYS})"
    )
    history.add_argument("--start-date", type=_day, metavar="YYYY-MM-DD", help="first day, inclusive")
    history.add_argument(
        "--end-date", type=_day, metavar="YYYY-MM-DD", help="last day, inclusive (default today)"
    )
    history.add_argument("--metric", type=_metric, help="this metric's quantity instead of events")
    history.add_argument("--granularity", choices=["day", "month"], default="day")
    return parser


def _configure(args: argparse.Namespace) -> None:
    if args.endpoint_url:
        os.environ["DYNAMODB_ENDPOINT_URL"] = args.endpoint_url
    if args.region:
        os.environ["AWS_REGION"] = args.region
    if args.stack_name:
        store_db.reset()
        outputs = store_db.stack_outputs(args.stack_name)
        for output, variable in _STACK_OUTPUTS.items():
            if output not in outputs:
                raise CliError(f"stack {args.stack_name} has no output {output}")
            os.environ[variable] = outputs[output]
    store_db.reset()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _configure(args)
        args.handler(args)
    except UsageMeterError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"error: invalid input: {fields}", file=sys.stderr)
        return 1
    except NoCredentialsError:
        print(
            "error: no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
            file=sys.stderr,
        )
        return 1
    except ClientError as exc:
        error = exc.response.get("Error", {})
        service = exc.operation_name if hasattr(exc, "operation_name") else "AWS"
        print(f"error: {service} refused: {error.get('Code')}: {error.get('Message')}", file=sys.stderr)
        return 1
    except BotoCoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
