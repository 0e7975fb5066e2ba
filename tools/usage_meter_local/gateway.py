"""The local HTTP gateway: routes and authorizer from template.yaml, handlers in containers.

A small stand-in for API Gateway's HTTP API (which `sam local start-api` would need Docker
for): it turns each HTTP request into a payload-2.0 event, runs the route's Lambda
authorizer, invokes the handler and writes its answer back. Like API Gateway it queues a
burst of connections instead of refusing them, and it reports every request it answered.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aws_lambda_powertools import Logger

from usage_meter_local.containers import ContainerPool
from usage_meter_local.events import http_event
from usage_meter_local.invoke import JSON, Answer
from usage_meter_local.template import Route, routes

logger = Logger(service="usage-meter-gateway")
MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit
# Connections waiting to be accepted. socketserver's default of 5 drops the SYNs of the 6th
# simultaneous client on (the client waits a second or more for its retry, or gives up);
# API Gateway queues bursts, and so does this, up to the kernel's own cap (somaxconn).
LISTEN_BACKLOG = 1024

# Called once per answered request: method, path, status, milliseconds
RequestObserver = Callable[[str, str, int, float], None]


class Gateway(ThreadingHTTPServer):
    """One thread per connection; the listen backlog holds a burst until threads take it."""

    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True


def _query(raw: str) -> dict[str, str]:
    """API Gateway joins repeated query parameters with commas in payload 2.0."""
    joined: dict[str, str] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined


def _headers(handler: BaseHTTPRequestHandler) -> dict[str, str]:
    """Lower-cased header names; repeated headers comma-joined, as API Gateway does."""
    headers: dict[str, str] = {}
    for name, value in handler.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    return headers


def _plain(status: int, message: str) -> Answer:
    """API Gateway's own answers (no route, too large, a crashed handler)."""
    return Answer(
        status=status,
        headers={"content-type": JSON},
        body=json.dumps({"message": message}, separators=(",", ":")),
    )


def make_server(
    pool: ContainerPool,
    host: str = "127.0.0.1",
    port: int = 3000,
    on_request: RequestObserver | None = None,
) -> Gateway:
    """The gateway on host:port; `on_request` hears of every answered request."""
    table = routes()

    class Handler(BaseHTTPRequestHandler):
        server_version = "usage-meter-local"

        def _serve(self) -> None:
            started = time.monotonic()
            # API Gateway names every request, answers included (the `apigw-requestid` header
            # clients report with errors); the handler's event carries the same id
            self.request_id = str(uuid.uuid4())
            path = urlsplit(self.path).path
            answer = self._answer(self.command.upper(), path)
            self._write(answer)
            elapsed_ms = (time.monotonic() - started) * 1000
            logger.info(
                "request",
                extra={
                    "method": self.command,
                    "path": path,
                    "status": answer.status,
                    "durationMs": round(elapsed_ms, 1),
                },
            )
            if on_request is not None:
                on_request(self.command, path, answer.status, elapsed_ms)

        def _answer(self, method: str, path: str) -> Answer:
            route = next((r for r in table if r.match(method, path) is not None), None)
            if route is None:
                return _plain(404, "Not Found")
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                return _plain(413, "Request Entity Too Large")
            body = self.rfile.read(length) if length else None
            try:
                return pool.send(method, path, self._event(route, method, body))
            except Exception:  # a crashed handler is API Gateway's 500
                logger.exception("handler failed", extra={"path": path})
                return _plain(500, "Internal Server Error")

        def _event(self, route: Route, method: str, body: bytes | None) -> dict[str, Any]:
            url = urlsplit(self.path)
            event = http_event(
                method,
                url.path,
                body=body,
                headers=_headers(self),
                query=_query(url.query) or None,
                route_key=f"{route.method} {route.path}",
                path_parameters=route.match(method, url.path),
            )
            event["rawQueryString"] = url.query
            event["requestContext"]["requestId"] = self.request_id
            return event

        def _write(self, answer: Answer) -> None:
            body = answer.body.encode()
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                if name.lower() not in ("content-length", "connection"):
                    self.send_header(name, value)
            self.send_header("apigw-requestid", self.request_id)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def __getattr__(self, name: str) -> Any:
            # every method reaches routing (an unrouted one is 404, as at API Gateway)
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            """Answered requests are logged by _serve, with their duration."""

        def log_message(self, format: str, *args: Any) -> None:
            # what http.server itself reports: malformed requests, timeouts
            logger.warning("http server", extra={"line": format % args})

    return Gateway((host, port), Handler)


def serve_in_background(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="gateway", daemon=True)
    thread.start()
    return thread


def describe_routes() -> str:
    return json.dumps([f"{r.method} {r.path}" + ("" if r.authorizer else " (public)") for r in routes()])
