"""`usage-meter events list|cancel|amend`: a developer's event log, and corrections.

The commands act as the provider's backend does (a service identity naming the developer),
through the same domain functions as the API: a correction from the CLI is exactly once too.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from usage_meter import jsonutil
from usage_meter.domain.corrections import correct
from usage_meter.domain.eventlog import list_events
from usage_meter.domain.identity import DeveloperResolver
from usage_meter.models.timestamps import parse_rfc3339
from usage_meter.models.wire import MAX_EVENT_PAGE, AmendIn, CancelIn, CorrectionResponse, EventOut
from usage_meter_admin.common import CliError, command, emit, emitted_json, print_table, service, subcommands
from usage_meter_admin.usage_commands import metric

HEADERS = ("TIMESTAMP", "KEY", "METRIC", "QUANTITY", "STATUS", "REV", "METADATA")


def _moment(text: str) -> datetime:
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time (2026-11-25T10:00:00Z)") from None


def _quantity(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _page_size(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_EVENT_PAGE:
        raise argparse.ArgumentTypeError(f"{text!r}: a number from 1 to {MAX_EVENT_PAGE}")
    return int(text)


def row(event: EventOut) -> list[str]:
    metadata = jsonutil.dumps(event.metadata) if event.metadata else ""
    return [
        event.timestamp,
        event.idempotency_key,
        event.metric,
        jsonutil.number_text(event.quantity),
        event.status,
        str(event.revision),
        metadata if len(metadata) <= 60 else f"{metadata[:57]}...",
    ]


def _list(args: argparse.Namespace) -> None:
    page = list_events(
        DeveloperResolver(service(args.developer)),
        developer_id=args.developer,
        metric=args.metric,
        status=args.status,
        start=args.start,
        end=args.end,
        limit=args.limit,
        cursor=args.cursor,
    )
    if emitted_json(args, page.wire()):
        return
    print_table(HEADERS, [row(e) for e in page.events])
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}")


def _outcome(args: argparse.Namespace, answer: CorrectionResponse) -> None:
    event = answer.event
    text = (
        f"{answer.status}: {event.idempotency_key} ({event.metric} {jsonutil.number_text(event.quantity)}, "
        f"{event.status}, revision {answer.revision})"
    )
    emit(args, answer.wire(), text)


def _cancel(args: argparse.Namespace) -> None:
    body = CancelIn(developer_id=args.developer, idempotency_key=args.key, reason=args.reason)
    _outcome(args, correct(service(args.developer), body))


def _amend(args: argparse.Namespace) -> None:
    if args.quantity is None and args.metadata is None:
        raise CliError("give --quantity and/or --metadata")
    fields: dict[str, Any] = {
        "developer_id": args.developer,
        "idempotency_key": args.key,
        "reason": args.reason,
    }
    if args.quantity is not None:
        fields["quantity"] = args.quantity
    if args.metadata is not None:
        try:
            fields["metadata"] = jsonutil.loads_object(args.metadata)
        except ValueError as exc:
            raise CliError(f"--metadata is not a JSON object: {exc}") from None
    _outcome(args, correct(service(args.developer), AmendIn(**fields)))


def _correction(events: Any, name: str, handler: Any, doc: str) -> argparse.ArgumentParser:
    parser = command(events, name, handler, doc)
    parser.add_argument("key", metavar="IDEMPOTENCY_KEY")
    parser.add_argument("--developer", required=True, metavar="DEVELOPER_ID")
    parser.add_argument(
        "--reason", default="", help="why (kept in the event's revisions, at most 500 characters)"
    )
    return parser


def add_event_commands(groups: Any) -> None:
    events = subcommands(groups, "events", "a developer's event log and corrections")
    listing = command(events, "list", _list, "a developer's events, newest first: one page (a table)")
    listing.add_argument("--developer", required=True, metavar="DEVELOPER_ID")
    listing.add_argument("--metric", type=metric, help="this metric only")
    listing.add_argument("--status", choices=["recorded", "cancelled", "amended"])
    listing.add_argument(
        "--from", dest="start", type=_moment, metavar="TIME", help="stamped at or after (RFC 3339)"
    )
    listing.add_argument(
        "--to", dest="end", type=_moment, metavar="TIME", help="stamped at or before (RFC 3339)"
    )
    listing.add_argument(
        "--limit", type=_page_size, default=50, help=f"events per page (at most {MAX_EVENT_PAGE})"
    )
    listing.add_argument("--cursor", help="the page after the one that printed it")
    _correction(events, "cancel", _cancel, "cancel an event: every counter it moved moves back, once")
    amend = _correction(events, "amend", _amend, "amend an event's quantity and/or metadata")
    amend.add_argument("--quantity", type=_quantity)
    amend.add_argument("--metadata", metavar="JSON", help="the event's new metadata (replaces it whole)")
