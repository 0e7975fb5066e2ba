"""Webhooks: registration refusals, secrets shown once and never stored, and what a delivery
does when the receiver answers 500, redirects, hangs or sits on an inner address."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from usage_meter import jsonutil
from usage_meter.domain import alerts, webhooks
from usage_meter.models.alerts import Webhook
from usage_meter.store import alerts as alert_store
from usage_meter.store import dynamodb as store_db
from usage_meter.store import endpoints, filequeue
from usage_meter_admin.listener import Received, Receiver
from usage_meter_local.events import LambdaContext
from usage_meter_local.handlers import load_handler
from usage_meter_local.outbox import environment as outbox_environment
from usage_meter_local.outbox import queue_folder
from usage_meter_local.streams import _sqs_record
from usage_meter_local.template import function_code

from helpers import table_items
from integration.conftest import Run, Stack, refused


@pytest.fixture
def outbox(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The local bus, queue and signing key (http://127.0.0.1 allowed, as on the local stack)."""
    env = outbox_environment(tmp_path / "outbox")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    store_db.reset()
    return queue_folder(env)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, list[Received]]]:
    got: list[Received] = []
    running = Receiver([], got.append).start()
    yield running, got
    running.stop()


def _server(respond: Callable[[BaseHTTPRequestHandler], None]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            respond(self)

        def log_message(self, *_: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/hook"


def _deliver_queued(folder: Path) -> dict[str, Any]:
    """One invocation of the webhooks function with what the queue holds (as the mapping does)."""
    handler = load_handler(*function_code("WebhooksFunction"))
    messages = filequeue.receive(folder, 10, 180, 12)
    answer = handler(
        {"Records": [_sqs_record(m) for m in messages]}, LambdaContext("WebhooksFunction", timeout_s=30)
    )
    failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    for message in messages:
        if message.message_id not in failed:
            filequeue.delete(folder, message.receipt)
    return answer


def _crossing(developer: str = "dev_alice") -> None:
    event = alerts.envelope(
        "usage.threshold.reached",
        {
            "developerId": developer,
            "metric": "api_calls",
            "period": "2026-11",
            "threshold": 80,
            "consumed": Decimal(80),
        },
        "evt_fixed",
    )
    alerts.publish_envelope(event)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://example.com/hook", "not an https://"),
        ("https://10.0.0.7/hook", "private, local or reserved"),
        ("https://169.254.169.254/latest/meta-data", "private, local or reserved"),
        ("https://[::1]/hook", "private, local or reserved"),
        ("https://localhost/hook", "private, local or reserved"),
        ("https://user:pw@example.com/hook", "no credentials"),
        ("https://example.com/" + "a" * 2048, "at most 2048"),
        ("http://127.0.0.1:9/hook", "not an https://"),  # only the local stack takes it
    ],
)
def test_registration_refuses_with_one_line(stack: Stack, run: Run, url: str, code: str) -> None:
    assert code in refused(stack, run, "webhooks", "add", url)


def test_secret_is_shown_once_and_never_stored(
    stack: Stack, run: Run, outbox: Path, receiver: tuple[Receiver, list[Received]]
) -> None:
    server, got = receiver
    code, out, _ = run(
        "--json",
        "webhooks",
        "add",
        server.url,
        "--developer",
        "dev_alice",
        "--events",
        "usage.threshold.reached",
    )
    assert code == 0
    created = jsonutil.loads(out)
    secret = created["secret"]
    assert secret.startswith("whsec_")
    stored = jsonutil.dumps(
        [table_items(stack.dynamodb, t) for t in (stack.accounts_table, stack.usage_table)]
    )
    assert secret not in stored
    assert secret.removeprefix("whsec_") not in stored
    code, out, _ = run("--json", "webhooks", "list")
    assert "whsec_" not in out
    assert "salt" not in out
    assert [h["webhookId"] for h in jsonutil.loads(out)] == [created["webhook"]["webhookId"]]
    server.secrets.append(secret)
    assert run("webhooks", "test", created["webhook"]["webhookId"])[0] == 0
    _crossing("dev_bob")  # another developer's event: filtered out
    _crossing()
    assert _deliver_queued(outbox) == {"batchItemFailures": []}
    assert sorted(r.event["type"] for r in got if r.event) == ["usage.threshold.reached", "webhook.test"]
    code, out, _ = run("webhooks", "deliveries", created["webhook"]["webhookId"])
    assert code == 0
    assert out.count("delivered") == 2


def test_a_500_is_retried_with_backoff_then_delivered_once(stack: Stack, outbox: Path) -> None:
    answers = [500, 204, 204]
    seen: list[int] = []

    def respond(request: BaseHTTPRequestHandler) -> None:
        seen.append(answers[len(seen)])
        request.send_response(seen[-1])
        request.end_headers()

    server = _server(respond)
    webhooks.add(_url(server))
    _crossing()
    before = time.time()
    assert len(_deliver_queued(outbox)["batchItemFailures"]) == 1
    (hidden,) = (filequeue._parse(p.name) for p in (outbox / "ready").iterdir())
    assert 25 <= hidden[0] / 1000 - before <= 40  # back after the first delay (30 s), not at once
    for path in (outbox / "ready").iterdir():  # time passes
        path.rename(path.with_name(path.name.replace(path.name[:15], "0" * 15, 1)))
    assert _deliver_queued(outbox) == {"batchItemFailures": []}
    _crossing()  # the same event published again (a claim marked late): not delivered twice
    assert _deliver_queued(outbox) == {"batchItemFailures": []}
    assert seen == [500, 204]
    hook = alert_store.list_webhooks()[0]
    assert [
        (a.attempt, a.outcome, a.status_code) for a in reversed(alert_store.attempts(hook.webhook_id, 10))
    ] == [
        (1, "failed", 500),
        (2, "delivered", 204),
    ]
    server.shutdown()


def test_a_redirect_is_never_followed(stack: Stack, outbox: Path) -> None:
    elsewhere: list[str] = []
    target = _server(lambda r: (elsewhere.append("hit"), r.send_response(204), r.end_headers()))

    def redirect(request: BaseHTTPRequestHandler) -> None:
        request.send_response(307)
        request.send_header("Location", _url(target))
        request.end_headers()

    server = _server(redirect)
    webhooks.add(_url(server))
    _crossing()
    assert len(_deliver_queued(outbox)["batchItemFailures"]) == 1
    assert elsewhere == []
    (attempt,) = alert_store.attempts(alert_store.list_webhooks()[0].webhook_id, 10)
    assert (attempt.outcome, attempt.status_code, attempt.error) == ("failed", 307, "redirect not followed")
    server.shutdown()
    target.shutdown()


def test_a_hanging_receiver_times_out_without_blocking_others(
    stack: Stack, outbox: Path, receiver: tuple[Receiver, list[Received]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(endpoints, "READ_TIMEOUT_S", 1.0)
    release = threading.Event()

    def hang(request: BaseHTTPRequestHandler) -> None:
        release.wait(10)

    slow = _server(hang)
    healthy, got = receiver
    webhooks.add(_url(slow))
    healthy.secrets.append(webhooks.add(healthy.url).secret)
    _crossing()
    started = time.monotonic()
    answer = _deliver_queued(outbox)
    took = time.monotonic() - started
    release.set()
    assert len(answer["batchItemFailures"]) == 1  # the hanging one only
    assert [r.event["id"] for r in got if r.event] == ["evt_fixed"]
    assert took < 5
    slow.shutdown()


def test_an_inner_address_is_refused_at_delivery_too(
    stack: Stack, outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host that resolved to a public address at registration and to an inner one now."""
    hook = Webhook(webhook_id="wh_rebound", url="https://hooks.example.com/x", salt="00", created_at="t")
    alert_store.put_webhook(hook)
    monkeypatch.setattr(
        endpoints.socket, "getaddrinfo", lambda *_a, **_k: [(2, 1, 6, "", ("169.254.169.254", 443))]
    )
    connected: list[Any] = []
    monkeypatch.setattr(endpoints.socket, "create_connection", lambda *a, **k: connected.append(a))
    _crossing()
    assert len(_deliver_queued(outbox)["batchItemFailures"]) == 1
    assert connected == []
    (attempt,) = alert_store.attempts("wh_rebound", 10)
    assert attempt.outcome == "refused"
    assert "169.254.169.254" in (attempt.error or "")


def test_removed_endpoints_get_nothing_and_unknown_ids_are_one_line(
    stack: Stack, run: Run, outbox: Path
) -> None:
    created = webhooks.add("http://127.0.0.1:9/hook")
    assert run("webhooks", "remove", created.webhook.webhook_id)[0] == 0
    _crossing()
    assert not (outbox / "ready").exists() or not list((outbox / "ready").iterdir())
    for command in ("remove", "test", "deliveries"):
        assert "no webhook wh_nope" in refused(stack, run, "webhooks", command, "wh_nope")


def test_plan_alert_thresholds(stack: Stack, run: Run) -> None:
    code, out, _ = run("plans", "put", "alerting", "--metric", "api_calls=1000", "--alerts", "50,75,100")
    assert code == 0
    assert "alerts 50,75,100%" in out
    from usage_meter.store import accounts as account_store

    plan = account_store.get_plan("alerting")
    assert plan is not None
    assert plan.metrics["api_calls"].thresholds == (50, 75, 100)
    for bad in ("0,50", "eighty", "1,2,3,4,5,6,7,8,9,10,11"):
        assert "--alerts" in refused(
            stack, run, "plans", "put", "x", "--metric", "api_calls=1", "--alerts", bad
        )
