"""`usage-meter`: the admin CLI for developers, API keys, plans and meters, on-demand rollups, and
usage views (a developer's current usage and history, rendered by `views`).

argparse rather than a CLI framework: it ships with Python, so the CLI adds nothing to the
Lambda layer and runs wherever boto3 does. The commands live in `account_commands`,
`meter_commands` and `usage_commands`; `connection` chooses the stack (--stack-name, --local, the environment)
and names what is missing when AWS cannot be used. Every failure a user can cause or fix
is one `error: …` line on stderr and exit code 1; anything else is a bug and raises.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from usage_meter.errors import UsageMeterError, json_message
from usage_meter_admin import connection
from usage_meter_admin.account_commands import add_developer_commands, add_key_commands, add_plan_commands
from usage_meter_admin.common import CliError
from usage_meter_admin.event_commands import add_event_commands
from usage_meter_admin.meter_commands import add_meter_commands
from usage_meter_admin.usage_commands import add_rollup_commands, add_usage_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usage-meter", description="Administer Usage Meter.")
    connection.add_options(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    groups = parser.add_subparsers(dest="group", required=True)
    add_developer_commands(groups)
    add_key_commands(groups)
    add_plan_commands(groups)
    add_meter_commands(groups)
    add_rollup_commands(groups)
    add_usage_commands(groups)
    add_event_commands(groups)
    return parser


def describe(exc: Exception, args: argparse.Namespace) -> str | None:
    """The line a user sees for `exc`, or None when it is a bug (it then raises)."""
    explained = connection.explain(exc, args)
    if explained is not None:
        return explained
    if isinstance(exc, UsageMeterError):
        return exc.message
    if isinstance(exc, CliError | BotoCoreError):
        return str(exc)
    if isinstance(exc, ValidationError):
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {json_message(e)}" for e in exc.errors())
        return f"invalid input: {fields}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{exc.operation_name} refused: {error.get('Code')}: {error.get('Message')}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        connection.configure(args)
        args.handler(args)
    except Exception as exc:
        message = describe(exc, args)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
