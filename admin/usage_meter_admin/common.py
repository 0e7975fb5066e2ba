"""What every command module of the CLI shares: its error, its output and its registration."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from usage_meter import jsonutil

Handler = Callable[[argparse.Namespace], None]


class CliError(Exception):
    """A message for the user; exit code 1."""


def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    """The command's answer: `payload` as JSON with --json, else `text`."""
    print(jsonutil.dumps(payload) if args.json else text)


def command(group: Any, name: str, handler: Handler, doc: str) -> argparse.ArgumentParser:
    """A subcommand of `group` (an argparse subparsers action) that runs `handler`."""
    sub: argparse.ArgumentParser = group.add_parser(name, help=doc, description=doc)
    sub.set_defaults(handler=handler)
    return sub


def subcommands(groups: Any, name: str, doc: str) -> Any:
    """A command group (`usage-meter developers …`) whose subcommand is required."""
    return groups.add_parser(name, help=doc).add_subparsers(dest="command", required=True)
