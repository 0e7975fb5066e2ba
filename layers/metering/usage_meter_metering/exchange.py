"""One request and its response as a metering expression sees them: status, method, path, body
sizes, the JSON response (`respBody`) and server-sent events (`sseEvents`, `allData`)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from usage_meter import jsonutil
from usage_meter_metering.errors import Skip
from usage_meter_metering.expressions import select_paths

MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32
MAX_JSON_VALUES = 10_000
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

Event = Mapping[str, Any]


def parse_sse(text: str) -> tuple[int, str]:
    """Server-sent events in a buffered text/event-stream body: (events, all data).

    An event is a block of lines ended by a blank line with at least one `data` field; its
    data is its `data` values joined by newlines. `allData` concatenates the events' data, in
    order, without separators. As in the SSE standard, lines starting with ':' are comments
    and a block the body does not end with a blank line is never dispatched, so not counted.
    """
    events = 0
    payloads: list[str] = []
    data: list[str] = []
    lines = _LINE_BREAK.split(text.removeprefix("\ufeff"))
    for line in lines[:-1]:  # the last piece was not ended by a line break
        if not line:
            if data:
                events += 1
                payloads.append("\n".join(data))
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))
    return events, "".join(payloads)


def _json_shape_fault(value: Any) -> Skip | None:
    """Why parsed JSON may not go to the engine: nested deeper than MAX_JSON_DEPTH, or more
    than MAX_JSON_VALUES values (the engine converts each, ~2-5 µs apiece). Iterative, and
    stops at the first fault."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    count = 0
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > MAX_JSON_VALUES:
            return Skip("body_too_large", values=f">{MAX_JSON_VALUES}", limit=MAX_JSON_VALUES)
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                return Skip("body_too_deep", limit=MAX_JSON_DEPTH)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


def _body_bytes(body: Any, base64_encoded: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    text = str(body)
    if base64_encoded:
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return text.encode()
    return text.encode()


def _header(headers: Any, name: str) -> str:
    if not isinstance(headers, Mapping):
        return ""
    for key, value in headers.items():
        if str(key).lower() == name:
            return str(value[0] if isinstance(value, list) and value else value)
    return ""


def response_status(response: Any) -> int:
    """The status API Gateway answers with: the result's statusCode, else 200 (payload 2.0)."""
    if isinstance(response, Mapping) and "statusCode" in response:
        return int(response["statusCode"])
    return 200


@dataclass
class Exchange:
    """One request and its response. The bodies are parsed (JSON, SSE) only for an expression
    that reads them: see `variables`."""

    status: int
    method: str
    path: str
    request_body: bytes
    response_body: bytes
    content_type: str
    max_body_bytes: int = MAX_BODY_BYTES

    @classmethod
    def of(cls, event: Event, response: Any, max_body_bytes: int = MAX_BODY_BYTES) -> Exchange:
        """From a payload-2.0 event and the handler's result. A result without statusCode is
        what API Gateway (payload 2.0) makes of it: 200 with the result as a JSON body."""
        context = event.get("requestContext")
        http = (context.get("http") or {}) if isinstance(context, Mapping) else {}
        if isinstance(response, Mapping) and "statusCode" in response:
            body = _body_bytes(response.get("body"), response.get("isBase64Encoded"))
            content_type = _header(response.get("headers"), "content-type") or _header(
                response.get("multiValueHeaders"), "content-type"
            )
        else:
            body = jsonutil.dumps(response).encode()
            content_type = "application/json"
        return cls(
            status=response_status(response),
            method=str(http.get("method", "")),
            path=str(http.get("path") or event.get("rawPath") or ""),
            request_body=_body_bytes(event.get("body"), event.get("isBase64Encoded")),
            response_body=body,
            content_type=content_type.split(";")[0].strip().lower(),
            max_body_bytes=max_body_bytes,
        )

    def _text(self) -> str:
        if len(self.response_body) > self.max_body_bytes:
            raise Skip("body_too_large", responseBytes=len(self.response_body), limit=self.max_body_bytes)
        return self.response_body.decode("utf-8", errors="replace")

    def resp_body(self, paths: tuple[tuple[str, ...], ...] | None = None) -> Any:
        """The JSON response body, or null when it is not JSON (or is an event stream); with
        `paths`, only those members of it."""
        text = self._text()
        if self.content_type == "text/event-stream":
            return None
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if paths is not None:
            value = select_paths(value, paths)
        fault = _json_shape_fault(value)
        if fault is not None:
            raise fault
        return value

    def sse(self) -> tuple[int, str]:
        text = self._text()
        if self.content_type != "text/event-stream":
            return 0, ""
        return parse_sse(text)

    def variables(
        self, names: frozenset[str], body_paths: tuple[tuple[str, ...], ...] | None = None
    ) -> dict[str, Any]:
        """The named variables only: the response body is parsed only if the expression reads it."""
        values: dict[str, Any] = {}
        if "status" in names:
            values["status"] = self.status
        if "method" in names:
            values["method"] = self.method
        if "path" in names:
            values["path"] = self.path
        if "requestBytes" in names:
            values["requestBytes"] = len(self.request_body)
        if "responseBytes" in names:
            values["responseBytes"] = len(self.response_body)
        if "respBody" in names:
            values["respBody"] = self.resp_body(body_paths)
        if names & {"sseEvents", "allData"}:
            events, data = self.sse()
            values["sseEvents"] = events
            values["allData"] = data
        return values
