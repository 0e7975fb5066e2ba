"""The local HTTP gateway: routes and authorizer from template.yaml, handlers in containers.

A small stand-in for API Gateway's HTTP API (which `sam local start-api` would need Docker
for): it turns each HTTP request into a payload-2.0 event, runs the route's Lambda
authorizer, invokes the handler and writes its answer back.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aws_lambda_powertools import Logger

from usage_meter_local.containers import ContainerPool
from usage_meter_local.events import http_event
from usage_meter_local.template import routes

logger = Logger(service="usage-meter-gateway")
MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit


def _query(raw: str) -> dict[str, str]:
    """API Gateway joins repeated query parameters with commas in payload 2.0."""
    joined: dict[str, str] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined


def make_server(pool: ContainerPool, host: str = "127.0.0.1", port: int = 3000) -> ThreadingHTTPServer:
    table = routes()

    class Handler(BaseHTTPRequestHandler):
        server_version = "usage-meter-local"

        def _serve(self) -> None:
            url = urlsplit(self.path)
            method = self.command.upper()
            route = next((r for r in table if r.match(method, url.path) is not None), None)
            if route is None:
                self._write(404, {"content-type": "application/json"}, b'{"message":"Not Found"}')
                return
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self._write(
                    413, {"content-type": "application/json"}, b'{"message":"Request Entity Too Large"}'
                )
                return
            body = self.rfile.read(length) if length else None
            headers: dict[str, str] = {}
            for name, value in self.headers.items():  # repeated headers are comma-joined
                key = name.lower()
                headers[key] = f"{headers[key]},{value}" if key in headers else value
            query = _query(url.query)
            event = http_event(
                method,
                url.path,
                body=body,
                headers=headers,
                query=query or None,
                route_key=f"{route.method} {route.path}",
                path_parameters=route.match(method, url.path),
            )
            event["rawQueryString"] = url.query
            try:
                answer = pool.send(method, url.path, event)
            except Exception:  # a crashed handler is API Gateway's 500
                logger.exception("handler failed", extra={"path": url.path})
                self._write(500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}')
                return
            self._write(answer.status, answer.headers, answer.body.encode())

        def _write(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection"):
                    self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def __getattr__(self, name: str) -> Any:
            # every method reaches routing (an unrouted one is 404, as at API Gateway)
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("request", extra={"line": format % args})

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve_in_background(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="gateway", daemon=True)
    thread.start()
    return thread


def describe_routes() -> str:
    return json.dumps([f"{r.method} {r.path}" + ("" if r.authorizer else " (public)") for r in routes()])
