"""A local webhook receiver: checks each delivery's signature and hands the event on.

`usage-meter webhooks listen --port 4000 --secret whsec_…` prints one line per event; the
tests and the latency bench use the same receiver. A delivery that does not verify gets 400
(and is retried by the service), one that does gets 204.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from usage_meter_client import webhooks as sdk_webhooks


@dataclass(frozen=True)
class Received:
    """One delivery as it arrived: the event (None if it did not verify) and when."""

    event: dict[str, Any] | None
    error: str | None
    received_at: float  # time.time()
    attempt: str | None


OnReceive = Callable[[Received], None]


def _handler(secrets: list[str], on_receive: OnReceive) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            header = self.headers.get(sdk_webhooks.SIGNATURE_HEADER, "")
            event: dict[str, Any] | None = None
            error: str | None = "no secret matches"
            for secret in secrets:
                try:
                    event, error = sdk_webhooks.verify(body, header, secret), None
                    break
                except sdk_webhooks.WebhookVerificationError as exc:
                    error = str(exc)
            on_receive(Received(event, error, time.time(), self.headers.get("Usage-Meter-Attempt")))
            self.send_response(204 if event is not None else 400)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


class Receiver:
    """An HTTP receiver on 127.0.0.1 (port 0: a free one), serving in a background thread;
    without `on_receive` it keeps every delivery in `received`."""

    def __init__(self, secrets: list[str], on_receive: OnReceive | None = None, port: int = 0) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(secrets, on_receive or self._keep))
        self.server.daemon_threads = True
        self.secrets = secrets

    def _keep(self, delivery: Received) -> None:
        with self._lock:
            self.received.append(delivery)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def start(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
