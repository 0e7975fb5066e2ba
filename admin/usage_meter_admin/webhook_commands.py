"""`usage-meter webhooks …`: register endpoints, send a test, read the attempts, listen locally."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Any

from usage_meter import jsonutil
from usage_meter.domain import webhooks
from usage_meter.models.alerts import EVENT_TYPES, Attempt, Webhook
from usage_meter_admin.common import CliError, command, emit, print_table, subcommands, wire

WEBHOOK_HEADERS = ("id", "url", "developer", "events", "created")
ATTEMPT_HEADERS = ("attempted", "event", "type", "attempt", "outcome", "status", "ms", "error")
SECRET_VARIABLE = "USAGE_METER_WEBHOOK_SECRET"  # noqa: S105 (a variable name)


def _row(hook: Webhook) -> list[str]:
    return [
        hook.webhook_id,
        hook.url,
        hook.developer_id or "(all)",
        ",".join(hook.events) or "(all)",
        hook.created_at,
    ]


def _public(hook: Webhook) -> Any:
    return wire(hook, exclude={"salt"})


def _event_types(text: str | None) -> list[Any]:
    if not text:
        return []
    types = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise CliError(f"--events: unknown type {', '.join(unknown)} (types: {', '.join(EVENT_TYPES)})")
    return types


def _add(args: argparse.Namespace) -> None:
    created = webhooks.add(args.url, args.developer, _event_types(args.events))
    emit(
        args,
        {"webhook": _public(created.webhook), "secret": created.secret},
        f"{created.webhook.webhook_id} -> {created.webhook.url}\n"
        f"signing secret: {created.secret}\n(store it now, it is not shown again)",
    )


def _list(args: argparse.Namespace) -> None:
    from usage_meter.store import alerts as alert_store

    hooks = alert_store.list_webhooks()
    if args.json:
        emit(args, [_public(h) for h in hooks], "")
        return
    print_table(WEBHOOK_HEADERS, [_row(h) for h in hooks])


def _remove(args: argparse.Namespace) -> None:
    hook = webhooks.remove(args.webhook_id)
    emit(args, _public(hook), f"removed {hook.webhook_id} ({hook.url}); nothing more is delivered to it")


def _test(args: argparse.Namespace) -> None:
    event_id = webhooks.test(args.webhook_id)
    emit(
        args,
        {"eventId": event_id},
        f"queued webhook.test {event_id}; `usage-meter webhooks deliveries {args.webhook_id}` shows the attempt",
    )


def _attempt_row(a: Attempt) -> list[str]:
    status = "" if a.status_code is None else str(a.status_code)
    return [
        a.attempted_at,
        a.event_id,
        a.event_type,
        str(a.attempt),
        a.outcome,
        status,
        str(a.duration_ms),
        a.error or "",
    ]


def _deliveries(args: argparse.Namespace) -> None:
    attempts = webhooks.deliveries(args.webhook_id, args.limit)
    if args.json:
        emit(args, [wire(a) for a in attempts], "")
        return
    print_table(ATTEMPT_HEADERS, [_attempt_row(a) for a in attempts])


def _listen(args: argparse.Namespace) -> None:
    from usage_meter_admin.listener import Received, Receiver

    secrets = list(args.secret or []) or [s for s in [os.environ.get(SECRET_VARIABLE, "")] if s]
    if not secrets:
        raise CliError(f"give the endpoint's signing secret: --secret whsec_… (or set {SECRET_VARIABLE})")

    def show(delivery: Received) -> None:
        if delivery.event is None:
            print(f"REFUSED (400): {delivery.error}", flush=True)
        elif args.json:
            print(jsonutil.dumps(delivery.event), flush=True)
        else:
            event = delivery.event
            print(
                f"{event['createdAt']} {event['type']} {event['id']} {jsonutil.dumps(event['data'])}",
                flush=True,
            )

    try:
        receiver = Receiver(secrets, show, port=args.port).start()
    except OSError as exc:
        raise CliError(f"cannot listen on 127.0.0.1:{args.port} ({exc.strerror})") from None
    print(f"listening on {receiver.url} (signatures checked; Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        receiver.stop()


def add_webhook_commands(groups: Any) -> None:
    hooks = subcommands(groups, "webhooks", "webhook endpoints and their deliveries")
    add = command(hooks, "add", _add, "register an endpoint; prints its signing secret once")
    add.add_argument("url", help="https://… (the local stack also takes http://127.0.0.1:PORT/…)")
    add.add_argument("--developer", help="only this developer's events (default: every developer's)")
    add.add_argument("--events", metavar="TYPE[,TYPE…]", help=f"only these types: {', '.join(EVENT_TYPES)}")
    command(hooks, "list", _list, "list the endpoints")
    command(hooks, "remove", _remove, "remove an endpoint").add_argument("webhook_id")
    command(hooks, "test", _test, "send a webhook.test event to one endpoint").add_argument("webhook_id")
    deliveries = command(hooks, "deliveries", _deliveries, "an endpoint's latest delivery attempts")
    deliveries.add_argument("webhook_id")
    deliveries.add_argument("--limit", type=int, default=20, choices=range(1, 101), metavar="N", help="1-100")
    listen = command(hooks, "listen", _listen, "a local receiver that checks signatures and prints events")
    listen.add_argument("--port", type=int, default=4000)
    listen.add_argument(
        "--secret", action="append", help=f"a signing secret (repeatable; or {SECRET_VARIABLE})"
    )
