"""`usage-meter developers|keys|plans …`: the accounts a provider administers."""

from __future__ import annotations

import argparse
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from usage_meter import jsonutil
from usage_meter.domain import accounts, usage
from usage_meter.models.accounts import ApiKeyRecord, Developer, Identity, MetricLimit, Plan
from usage_meter.models.wire import METRIC_PATTERN, CurrentUsageResponse
from usage_meter.store import accounts as account_store
from usage_meter_admin import catalogs
from usage_meter_admin.common import CliError, command, emit, print_table, subcommands, wire

DEVELOPER_HEADERS = ("developer", "plan", "created", "name")
KEY_HEADERS = ("key", "prefix", "role", "status", "created", "last used")
PLAN_HEADERS = ("plan", "rate", "limits")
SECRET_FIELDS = {"key_hash"}  # a key's sha256 is never printed


def developer_row(d: Developer) -> list[str]:
    return [d.developer_id, d.plan, d.created_at, d.name]


def key_row(k: ApiKeyRecord) -> list[str]:
    return [k.key_id, f"{k.prefix}…", k.role, k.status, k.created_at, k.last_used_at or "-"]


def plan_row(p: Plan) -> list[str]:
    limits = ", ".join(
        f"{metric}={'unlimited' if m.limit is None else jsonutil.number_text(m.limit)} ({m.enforcement})"
        + (f" alerts {','.join(map(str, m.thresholds)) or 'none'}%" if m.alerts is not None else "")
        for metric, m in sorted(p.metrics.items())
    )
    rate = f"{p.requests_per_minute or '-'}/min" + (" (hard)" if p.rate_ceiling is not None else "")
    return [p.name, rate, limits]


def key_json(k: ApiKeyRecord) -> Any:
    return wire(k, exclude=SECRET_FIELDS)


def _developers_create(args: argparse.Namespace) -> None:
    developer = accounts.create_developer(args.name, args.plan, args.id)
    emit(args, wire(developer), f"created developer {developer.developer_id} ({developer.plan})")


def _developers_list(args: argparse.Namespace) -> None:
    developers = sorted(account_store.list_developers(), key=lambda d: d.developer_id)
    if args.json:
        emit(args, wire(developers), "")
        return
    print_table(DEVELOPER_HEADERS, [developer_row(d) for d in developers])


def _developers_show(args: argparse.Namespace) -> None:
    developer = accounts.get_developer(args.developer_id)
    keys = accounts.list_keys(args.developer_id)
    if args.json:
        emit(args, {**wire(developer), "keys": [key_json(k) for k in keys]}, "")
        return
    print_table(DEVELOPER_HEADERS, [developer_row(developer)])
    print()
    print_table(KEY_HEADERS, [key_row(k) for k in keys])


def _open_usage(developer_id: str) -> CurrentUsageResponse:
    """The developer's usage of the current billing period, read as the service reads it."""
    return usage.current_usage(Identity(developer_id=developer_id, role="service"), developer_id=developer_id)


def _developers_delete(args: argparse.Namespace) -> None:
    current = _open_usage(args.developer_id)
    used = {name: u.consumed for name, u in current.metrics.items() if u.consumed}
    if (current.total_requests or used) and not args.force:
        raise CliError(
            f"developer {args.developer_id} has usage in the open period {current.period.key} "
            f"({current.total_requests} events): --force deletes it anyway (its keys stop working; "
            "its usage history stays for billing)"
        )
    deleted = accounts.delete_developer(args.developer_id)
    usage_text = ", ".join(f"{name} {jsonutil.number_text(value)}" for name, value in sorted(used.items()))
    emit(
        args,
        wire(deleted),
        f"deleted developer {deleted.developer_id} and its {len(deleted.key_ids)} key(s) (they stop "
        f"working within 60 seconds); its usage history stays for billing"
        + (f" ({current.period.key}: {usage_text})" if used else ""),
    )


def _keys_create(args: argparse.Namespace) -> None:
    created = accounts.create_key(args.developer_id, args.role)
    record = created.record
    emit(
        args,
        {"key": created.key, **key_json(record)},
        f"{created.key}\n(key {record.key_id}, role {record.role}, developer {record.developer_id}: "
        "store it now, it is not shown again)",
    )


def _keys_list(args: argparse.Namespace) -> None:
    keys = accounts.list_keys(args.developer_id)
    if args.json:
        emit(args, [key_json(k) for k in keys], "")
        return
    print_table(KEY_HEADERS, [key_row(k) for k in keys])


def _keys_revoke(args: argparse.Namespace) -> None:
    key = accounts.revoke_key(args.developer_id, args.key_id)
    emit(
        args,
        key_json(key),
        f"revoked {key.key_id} ({key.prefix}…); it stops working within 60 seconds",
    )


def _plans_list(args: argparse.Namespace) -> None:
    plans = accounts.plans()
    if args.json:
        emit(args, wire(plans), "")
        return
    print_table(PLAN_HEADERS, [plan_row(p) for p in plans])


def _plans_set(args: argparse.Namespace) -> None:
    developer = accounts.set_plan(args.developer_id, args.plan)
    emit(args, wire(developer), f"{developer.developer_id} is now on plan {developer.plan}")


def parse_allowance(text: str) -> tuple[str, MetricLimit]:
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


def _allowances(texts: list[str]) -> dict[str, MetricLimit]:
    """The --metric options, one per metric: a metric given twice is refused, not overwritten."""
    metrics: dict[str, MetricLimit] = {}
    for text in texts:
        metric, allowance = parse_allowance(text)
        if metric in metrics:
            raise CliError(f"--metric {metric} is given twice: give each metric once")
        metrics[metric] = allowance
    return metrics


def parse_alerts(text: str) -> list[int]:
    """`--alerts 80,90,100`: percentages of each limit, 1 to 1000, at most 10 (`none`: no alerts)."""
    if text.strip() == "none":
        return []
    try:
        values = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise CliError(f"--alerts {text!r}: expected percentages such as 80,90,100 (or none)") from None
    if not values or len(values) > 10 or values[0] < 1 or values[-1] > 1000:
        raise CliError(f"--alerts {text!r}: 1 to 10 percentages between 1 and 1000")
    return values


def _plans_put(args: argparse.Namespace) -> None:
    metrics = _allowances(args.metric or [])
    if args.alerts is not None:
        thresholds = parse_alerts(args.alerts)
        metrics = {name: m.model_copy(update={"alerts": thresholds}) for name, m in metrics.items()}
    if args.requests_per_minute is not None and args.requests_per_minute < 1:
        raise CliError(f"--requests-per-minute {args.requests_per_minute}: it must be at least 1")
    if args.rate_enforcement == "hard" and args.requests_per_minute is None:
        raise CliError("--rate-enforcement hard needs --requests-per-minute")
    if not metrics and args.requests_per_minute is None:
        raise CliError(
            f"plan {args.name} would be empty: give at least one --metric METRIC=LIMIT[:soft|hard] "
            "or --requests-per-minute N"
        )
    plan = accounts.put_plan(
        Plan(
            name=args.name,
            metrics=metrics,
            requests_per_minute=args.requests_per_minute,
            rate_enforcement=args.rate_enforcement,
        )
    )
    stored = "\t".join(plan_row(plan))
    emit(args, wire(plan), f"stored plan {stored}")


def _plans_delete(args: argparse.Namespace) -> None:
    deleted = accounts.delete_plan(args.name)
    default = "; the default plan of that name applies again" if deleted.default_restored else ""
    emit(args, wire(deleted), f"deleted plan {deleted.name}{default}")


def _plans_seed(args: argparse.Namespace) -> None:
    report = catalogs.seed(args.catalog, replace=args.replace)
    lines = [
        f"catalog {report.catalog}: created {len(report.meters_created)} meter(s)"
        f" ({len(report.meters_unchanged)} already there), stored {len(report.plans_stored)} plan(s)"
        f" ({len(report.plans_unchanged)} unchanged)",
        *(
            f"kept plan {name}: the stored one differs (--replace stores the catalog's)"
            for name in report.plans_kept
        ),
    ]
    emit(args, wire(report), "\n".join(lines))


def add_developer_commands(groups: Any) -> None:
    developers = subcommands(groups, "developers", "developers")
    create = command(developers, "create", _developers_create, "create a developer")
    create.add_argument("--name", required=True)
    create.add_argument("--plan", default="free")
    create.add_argument("--id", help="developer id (default: a generated dev_… id)")
    command(developers, "list", _developers_list, "list developers")
    show = command(developers, "show", _developers_show, "show a developer and its keys")
    show.add_argument("developer_id")
    delete = command(
        developers,
        "delete",
        _developers_delete,
        "delete a developer and its keys; its usage history stays (refused while it has usage in "
        "the open billing period, unless --force)",
    )
    delete.add_argument("developer_id")
    delete.add_argument(
        "--force", action="store_true", help="delete even with usage in the open billing period"
    )


def add_key_commands(groups: Any) -> None:
    keys = subcommands(groups, "keys", "API keys")
    create = command(keys, "create", _keys_create, "create an API key (printed once)")
    create.add_argument("developer_id")
    create.add_argument("--role", choices=["developer", "service"], default="developer")
    command(keys, "list", _keys_list, "list a developer's keys").add_argument("developer_id")
    revoke = command(keys, "revoke", _keys_revoke, "revoke a key")
    revoke.add_argument("developer_id")
    revoke.add_argument("key_id")


def add_plan_commands(groups: Any) -> None:
    plans = subcommands(groups, "plans", "plans")
    command(plans, "list", _plans_list, "list plans and their limits")
    assign = command(plans, "set", _plans_set, "put a developer on a plan (applies to its next request)")
    assign.add_argument("developer_id")
    assign.add_argument("plan")
    remove = command(
        plans, "delete", _plans_delete, "delete a stored plan (refused while a developer is on it)"
    )
    remove.add_argument("name")
    seed = command(
        plans,
        "seed",
        _plans_seed,
        "store a catalog's plans that are not stored yet, and the meters they need",
    )
    seed.add_argument("--catalog", choices=catalogs.CATALOGS, default="default", help="default: %(default)s")
    seed.add_argument("--replace", action="store_true", help="overwrite stored plans of the catalog's names")
    put = command(plans, "put", _plans_put, "create or replace a plan (applies to the next request)")
    put.add_argument("name")
    put.add_argument(
        "--metric",
        action="append",
        metavar="METRIC=LIMIT[:soft|hard]",
        help="a metric's limit per billing period (hard by default) or METRIC=unlimited; repeatable",
    )
    put.add_argument(
        "--requests-per-minute", type=int, help="the plan's request rate (events per UTC minute)"
    )
    put.add_argument(
        "--alerts",
        metavar="PCT[,PCT…]",
        help="alert thresholds in percent of each limit (default 80,90,100; none: no alerts)",
    )
    put.add_argument(
        "--rate-enforcement",
        choices=["soft", "hard"],
        default="soft",
        help="hard: tracking past the rate is refused (429 rate_limited); soft (default): reported only",
    )
