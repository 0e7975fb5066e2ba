"""`usage-meter meters …`: the meters, as data in the accounts table (GET /v1/meters lists them)."""

from __future__ import annotations

import argparse
from typing import Any

from usage_meter.domain import meters
from usage_meter.models.accounts import Meter
from usage_meter_admin.common import command, emit, print_table, subcommands, wire

METER_HEADERS = ("meter", "aggregation", "status", "dimensions", "shards", "unit", "description")


def meter_row(m: Meter) -> list[str]:
    aggregation = f"{m.aggregation}({m.unique_by})" if m.unique_by else m.aggregation
    dimensions = ",".join(m.dimensions) or "-"
    return [m.name, aggregation, m.status, dimensions, str(m.shards), m.unit or "-", m.description or ""]


def meter_wire(m: Meter) -> Any:
    """A meter as --json and `show` print it: `shards` only for a sharded meter."""
    return wire(m, exclude=() if m.shards > 1 else ("shards",))


def _meters_create(args: argparse.Namespace) -> None:
    dimensions = args.dimensions.split(",") if args.dimensions else []
    fields = {"name": args.name, "aggregation": args.aggregation, "dimensions": dimensions}
    optional = {
        "unique_by": args.unique_by,
        "unit": args.unit,
        "description": args.description,
        "shards": args.shards,
    }
    meter = meters.create(meters.definition(**fields, **{k: v for k, v in optional.items() if v is not None}))
    created = "\t".join(meter_row(meter))
    emit(args, meter_wire(meter), f"created meter {created}")


def _meters_list(args: argparse.Namespace) -> None:
    found = meters.meters()
    if args.json:
        emit(args, [meter_wire(m) for m in found], "")
        return
    print_table(METER_HEADERS, [meter_row(m) for m in found])


def _meters_show(args: argparse.Namespace) -> None:
    meter = meters.get(args.name)
    fields = meter_wire(meter)  # the same names as --json and the API
    fields["dimensions"] = ",".join(meter.dimensions)
    text = "\n".join(f"{name}: {'-' if value in (None, '') else value}" for name, value in fields.items())
    emit(args, meter_wire(meter), text)


def _meters_archive(args: argparse.Namespace) -> None:
    meter = meters.archive(args.name)
    emit(
        args,
        meter_wire(meter),
        f"archived meter {meter.name} (since {meter.archived_at}): it takes no new events; its usage stays readable",
    )


def add_meter_commands(groups: Any) -> None:
    group = subcommands(groups, "meters", "meters: how the events of one metric become usage")
    create = command(group, "create", _meters_create, "create a meter (its aggregation never changes)")
    create.add_argument("name", help="the metric the meter aggregates")
    create.add_argument(
        "--aggregation",
        default="sum",
        metavar="sum|count|max|latest|unique_count|level",
        help="how events become usage (default sum)",
    )
    create.add_argument("--unique-by", metavar="PROPERTY", help="unique_count: the metadata property counted")
    create.add_argument(
        "--dimensions", metavar="a,b,c", help="up to 3 metadata keys usage is also counted by"
    )
    create.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help="spread each counter over N items (sum and count meters without a hard limit: a hot developer)",
    )
    create.add_argument("--unit", metavar="TEXT", help="what one unit is (at most 32 characters)")
    create.add_argument("--description", metavar="TEXT", help="at most 256 characters")
    command(group, "list", _meters_list, "list the meters, active and archived")
    command(group, "show", _meters_show, "show one meter").add_argument("name")
    archive = command(group, "archive", _meters_archive, "archive a meter: it takes no new events")
    archive.add_argument("name")
