"""What every command module of the CLI shares: its error, its output and its registration.

One casing for all JSON the CLI prints: the API's camelCase (`developerId`, `createdAt`), so
`usage-meter --json …` and the HTTP answers read alike. Lists print as tables: with headers
and alignment on a terminal (rich), as tab-separated lines under a header line in a pipe.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Collection, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from usage_meter import jsonutil
from usage_meter.models.accounts import Identity

Handler = Callable[[argparse.Namespace], None]


class CliError(Exception):
    """A message for the user; exit code 1."""


def wire(value: Any, exclude: Collection[str] = ()) -> Any:
    """`value` as the CLI prints it in JSON: a model's fields under the API's camelCase names
    (minus `exclude`, at the top level); dict keys are data (metric names) and stay as they are."""
    if isinstance(value, BaseModel):
        fields = [name for name in type(value).model_fields if name not in exclude]
        return {to_camel(name): wire(getattr(value, name)) for name in fields}
    if isinstance(value, list | tuple):
        return [wire(item) for item in value]
    if isinstance(value, dict):
        return {key: wire(item) for key, item in value.items()}
    return value


def service(developer_id: str) -> Identity:
    """Who the CLI acts as when it reads or corrects a developer's usage: the provider's backend
    (a service identity naming the developer), so an unknown developer is an error, as with a
    service key, and every rule of the API applies."""
    return Identity(developer_id=developer_id, role="service")


def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    """The command's answer: `payload` as JSON with --json, else `text`."""
    print(jsonutil.dumps(payload) if args.json else text)


def emitted_json(args: argparse.Namespace, payload: Any) -> bool:
    """With --json, print `payload` (the API's own answer) and say so: the caller draws its
    table or view only when this is False."""
    if args.json:
        print(jsonutil.dumps(payload))
    return bool(args.json)


def table_text(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table for a pipe: a header line, then one tab-separated line per row."""
    return "\n".join("\t".join(cells) for cells in [headers, *rows])


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on stdout: rich's aligned columns on a terminal, `table_text` in a pipe (or
    without rich)."""
    from usage_meter_admin import views  # imports rich only when a console is made

    try:
        console = views.make_console()
    except ImportError:
        console = None
    if console is None or not console.is_terminal:
        print(table_text(headers, rows) if rows else "(none)")
        return
    views.render_table(console, headers, rows)


def command(group: Any, name: str, handler: Handler, doc: str) -> argparse.ArgumentParser:
    """A subcommand of `group` (an argparse subparsers action) that runs `handler`. It takes
    --json too, so the flag works after the subcommand as well as before it."""
    sub: argparse.ArgumentParser = group.add_parser(name, help=doc, description=doc)
    sub.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output (camelCase)"
    )
    sub.set_defaults(handler=handler)
    return sub


def subcommands(groups: Any, name: str, doc: str) -> Any:
    """A command group (`usage-meter developers …`) whose subcommand is required."""
    return groups.add_parser(name, help=doc).add_subparsers(dest="command", required=True)
