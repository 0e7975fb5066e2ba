"""`usage-meter developers|keys|plans …`: the accounts a provider administers."""

from __future__ import annotations

import argparse
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from usage_meter import jsonutil
from usage_meter.domain import accounts
from usage_meter.models.accounts import ApiKeyRecord, Developer, MetricLimit, Plan
from usage_meter.models.wire import METRIC_PATTERN
from usage_meter.store import accounts as account_store
from usage_meter_admin import catalogs
from usage_meter_admin.common import CliError, command, emit, subcommands


def developer_line(d: Developer) -> str:
    return f"{d.developer_id}\t{d.plan}\t{d.created_at}\t{d.name}"


def key_line(k: ApiKeyRecord) -> str:
    return f"{k.key_id}\t{k.prefix}…\t{k.role}\t{k.status}\t{k.created_at}\t{k.last_used_at or '-'}"


def plan_line(p: Plan) -> str:
    limits = ", ".join(
        f"{metric}={'unlimited' if m.limit is None else jsonutil.number_text(m.limit)} ({m.enforcement})"
        for metric, m in sorted(p.metrics.items())
    )
    rate = f"{p.requests_per_minute or '-'}/min" + (" (hard)" if p.rate_ceiling is not None else "")
    return f"{p.name}\t{rate}\t{limits}"


def _developers_create(args: argparse.Namespace) -> None:
    developer = accounts.create_developer(args.name, args.plan, args.id)
    emit(args, developer.model_dump(), f"created developer {developer.developer_id} ({developer.plan})")


def _developers_list(args: argparse.Namespace) -> None:
    developers = sorted(account_store.list_developers(), key=lambda d: d.developer_id)
    emit(args, [d.model_dump() for d in developers], "\n".join(map(developer_line, developers)) or "(none)")


def _developers_show(args: argparse.Namespace) -> None:
    developer = accounts.get_developer(args.developer_id)
    keys = accounts.list_keys(args.developer_id)
    text = "\n".join([developer_line(developer), "keys:", *("  " + key_line(k) for k in keys)])
    emit(args, {**developer.model_dump(), "keys": [k.model_dump(exclude={"key_hash"}) for k in keys]}, text)


def _keys_create(args: argparse.Namespace) -> None:
    created = accounts.create_key(args.developer_id, args.role)
    record = created.record
    emit(
        args,
        {"key": created.key, **record.model_dump(exclude={"key_hash"})},
        f"{created.key}\n(key {record.key_id}, role {record.role}, developer {record.developer_id}: "
        "store it now, it is not shown again)",
    )


def _keys_list(args: argparse.Namespace) -> None:
    keys = accounts.list_keys(args.developer_id)
    emit(args, [k.model_dump(exclude={"key_hash"}) for k in keys], "\n".join(map(key_line, keys)) or "(none)")


def _keys_revoke(args: argparse.Namespace) -> None:
    key = accounts.revoke_key(args.developer_id, args.key_id)
    emit(
        args,
        key.model_dump(exclude={"key_hash"}),
        f"revoked {key.key_id} ({key.prefix}…); it stops working within 60 seconds",
    )


def _plans_list(args: argparse.Namespace) -> None:
    plans = accounts.plans()
    emit(args, [p.model_dump() for p in plans], "\n".join(map(plan_line, plans)))


def _plans_set(args: argparse.Namespace) -> None:
    developer = accounts.set_plan(args.developer_id, args.plan)
    emit(args, developer.model_dump(), f"{developer.developer_id} is now on plan {developer.plan}")


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


def _plans_put(args: argparse.Namespace) -> None:
    metrics = dict(parse_allowance(text) for text in args.metric or [])
    if args.requests_per_minute is not None and args.requests_per_minute < 1:
        raise CliError("--requests-per-minute must be at least 1")
    if args.rate_enforcement == "hard" and args.requests_per_minute is None:
        raise CliError("--rate-enforcement hard needs --requests-per-minute")
    plan = accounts.put_plan(
        Plan(
            name=args.name,
            metrics=metrics,
            requests_per_minute=args.requests_per_minute,
            rate_enforcement=args.rate_enforcement,
        )
    )
    emit(args, plan.model_dump(), f"stored plan {plan_line(plan)}")


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
    emit(args, report.model_dump(), "\n".join(lines))


def add_developer_commands(groups: Any) -> None:
    developers = subcommands(groups, "developers", "developers")
    create = command(developers, "create", _developers_create, "create a developer")
    create.add_argument("--name", required=True)
    create.add_argument("--plan", default="free")
    create.add_argument("--id", help="developer id (default: a generated dev_… id)")
    command(developers, "list", _developers_list, "list developers")
    show = command(developers, "show", _developers_show, "show a developer and its keys")
    show.add_argument("developer_id")


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
        "--rate-enforcement",
        choices=["soft", "hard"],
        default="soft",
        help="hard: tracking past the rate is refused (429 rate_limited); soft (default): reported only",
    )
