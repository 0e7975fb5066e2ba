"""No API key in the logs: neither its plaintext nor its sha256, whatever the request.

A stack of its own at DEBUG (the e2e session stack logs only warnings) gets traffic with
valid, revoked, unknown and malformed keys, in both header styles, with bodies carrying
metadata, on the success and the refusal paths. Once it has stopped (every process has
flushed), its whole log is searched. The log must also hold the handlers' structured lines
for that traffic, so a stack that logged nothing could not pass.

The startup banner prints the demo keys on purpose (`make dev` shows them once, to try the
API); it is the only place they may appear.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import secrets
import string
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from usage_meter_local.dev import DEMO_DEVELOPER

from e2e.conftest import BANNER_END, BANNER_START, admin, running_stack

pytestmark = pytest.mark.e2e

KEY_PREFIX = "um_live_"
METADATA = {"customer": "acme-corp", "plan": "gold", "region": "eu-west-1", "tags": ["a", "b"], "n": 3}


@dataclass
class Traffic:
    terminal: str  # what the stack printed, read once it had stopped
    structured: str  # its log file (.local/dev.log): every process's structured lines
    keys: list[str]  # every key sent, whatever its shape
    demo_keys: list[str]
    revoked_key_id: str
    requests: int

    @property
    def log(self) -> str:
        """Everything the stack wrote."""
        return self.terminal + self.structured


def _random_key() -> str:
    return KEY_PREFIX + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))


def _send(
    stack: dict[str, Any],
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: Any = None,
    *,
    raw: bytes | None = None,
    content_type: str = "application/json",
) -> int:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(f"{stack['base']}{path}", data=data, method=method)  # noqa: S310
    if data is not None:
        request.add_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - 127.0.0.1 only
            answer.read()
            return int(answer.status)
    except urllib.error.HTTPError as error:
        error.read()
        return int(error.code)


def _drive(stack: dict[str, Any]) -> tuple[list[str], str, int]:
    """Every kind of key through every header style; returns the keys sent, the revoked key's
    id and the number of requests. Each answer is checked, so the traffic is what it says."""
    dev, svc = stack["developerKey"], stack["serviceKey"]
    created = admin(stack, "keys", "create", DEMO_DEVELOPER, "--role", "service")
    revoked, revoked_id = created["key"], created["keyId"]
    admin(stack, "keys", "revoke", DEMO_DEVELOPER, revoked_id)
    unknown = _random_key()
    malformed = ["not-a-key", KEY_PREFIX + "short", _random_key() + "X", _random_key().upper()]
    run = uuid.uuid4().hex[:8]

    def bearer(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def x_api_key(key: str) -> dict[str, str]:
        return {"X-API-Key": key}

    event = {"metric": "log_calls", "quantity": 1.5, "metadata": METADATA}
    demo_event = {**event, "developerId": DEMO_DEVELOPER}
    expected: list[tuple[int, str, str, dict[str, str], Any]] = []
    for style in (bearer, x_api_key):
        name = style.__name__
        expected += [
            # the service key tracks for the demo developer
            (
                200,
                "POST",
                "/v1/usage/events",
                {**style(svc), "Idempotency-Key": f"{run}-{name}-1"},
                demo_event,
            ),
            (
                200,
                "POST",
                "/v1/usage/events",
                style(svc),
                {"events": [{**demo_event, "idempotencyKey": f"{run}-{name}-{i}"} for i in (2, 3)]},
            ),
            # the developer key, on the success paths
            (200, "GET", "/v1/usage?metric=log_calls", style(dev), None),
            (200, "GET", "/v1/usage/history?days=3", style(dev), None),
            (200, "GET", "/v1/entitlements/log_calls", style(dev), None),
            # and refused by the handlers
            (403, "GET", "/v1/usage?developerId=dev_other", style(dev), None),
            (403, "POST", "/v1/usage/events", style(dev), event),  # developer keys only read
            (
                409,
                "POST",
                "/v1/usage/events",
                style(svc),
                {**demo_event, "quantity": 2, "idempotencyKey": f"{run}-{name}-1"},
            ),
            (422, "POST", "/v1/usage/events", style(svc), {**demo_event, "quantity": 0}),
            # the service key, for the demo developer and for one that does not exist
            (200, "POST", "/v1/usage/events", style(svc), demo_event),
            (200, "GET", f"/v1/usage/history?days=2&developerId={DEMO_DEVELOPER}", style(svc), None),
            (404, "GET", "/v1/usage?developerId=dev_nobody", style(svc), None),
            # refused by the authorizer
            (401, "GET", "/v1/usage", style(revoked), None),
            (401, "POST", "/v1/usage/events", style(unknown), event),
            *((401, "GET", "/v1/usage", style(key), None) for key in malformed),
        ]
    expected += [
        (200, "GET", "/v1/usage", {**bearer(dev), **x_api_key(dev)}, None),  # the same key twice
        (401, "GET", "/v1/usage", {**bearer(dev), **x_api_key(unknown)}, None),  # two different keys
        (401, "GET", "/v1/usage", {"Authorization": f"Basic {svc}"}, None),  # another scheme
        (401, "GET", "/v1/usage", {"Authorization": dev}, None),  # no scheme
        (401, "GET", "/v1/usage", {"authorization": f"bearer  {revoked} "}, None),
        (401, "GET", "/v1/usage", None, None),
    ]
    for status, method, path, headers, body in expected:
        answered = _send(stack, method, path, headers, body)
        assert answered == status, (method, path, sorted(headers or {}), answered)
    odd = [
        (415, {"raw": b"metric=x&quantity=1", "content_type": "application/x-www-form-urlencoded"}),
        (400, {"raw": b'{"metric": "x", "quantity": ', "content_type": "application/json"}),
    ]
    for status, kwargs in odd:
        answered = _send(stack, "POST", "/v1/usage/events", bearer(dev), **kwargs)
        assert answered == status, (kwargs, answered)
    return [dev, svc, revoked, unknown, *malformed], revoked_id, len(expected) + len(odd)


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Traffic:
    with running_stack(tmp_path_factory.mktemp("debug-stack"), {"POWERTOOLS_LOG_LEVEL": "DEBUG"}) as stack:
        keys, revoked_id, requests = _drive(stack)
    return Traffic(
        terminal=Path(stack["terminal"]).read_text(),
        structured=Path(stack["log"]).read_text(),
        keys=keys,
        demo_keys=[stack["developerKey"], stack["serviceKey"]],
        revoked_key_id=revoked_id,
        requests=requests,
    )


def _without_banner(log: str) -> str:
    start = log.index(BANNER_START)
    end = log.index(BANNER_END, start) + len(BANNER_END)
    return log[:start] + log[end:]


def _forms(key: str) -> dict[str, str]:
    """What of a key must never be logged: the key, its random part, its sha256 (as stored)."""
    digest = hashlib.sha256(key.encode()).digest()
    forms = {
        "plaintext": key,
        "sha256 hex": digest.hex(),
        "sha256 base64": base64.b64encode(digest).decode(),
        "sha256 base64url": base64.urlsafe_b64encode(digest).decode().rstrip("="),
    }
    if key.startswith(KEY_PREFIX) and len(key) > len(KEY_PREFIX) + 8:
        forms["random part"] = key.removeprefix(KEY_PREFIX)
    return forms


def _records(log: str) -> list[dict[str, Any]]:
    records = []
    for line in log.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


def test_no_key_and_no_key_hash_in_the_log(traffic: Traffic) -> None:
    log = _without_banner(traffic.log)
    lowered = log.lower()
    leaks = [
        f"{form} of {key[:12]}…"
        for key in traffic.keys
        for form, text in _forms(key).items()
        if (text.lower() in lowered if form == "sha256 hex" else text in log)
    ]
    assert not leaks, f"found in the stack's log: {leaks}"


def test_the_demo_keys_only_in_the_startup_banner(traffic: Traffic) -> None:
    banner = traffic.log[traffic.log.index(BANNER_START) : traffic.log.index(BANNER_END)]
    assert all(key in banner for key in traffic.demo_keys)  # printed once, by design
    rest = _without_banner(traffic.log)
    assert not [key[:12] for key in traffic.demo_keys if key in rest]


def test_the_log_holds_the_handlers_structured_lines(traffic: Traffic) -> None:
    """Without these the searches above would pass on an empty log."""
    records = _records(traffic.structured)
    gateway = [r for r in records if r.get("service") == "usage-meter-gateway"]
    handlers = [r for r in records if r.get("service") == "usage-meter"]
    authorizer = [r for r in handlers if r.get("function_name") == "AuthorizerFunction"]

    # one gateway line per answered request, with what the terminal line shows
    answered = [r for r in gateway if r.get("level") == "INFO" and r.get("message") == "request"]
    assert len(answered) >= traffic.requests
    assert all({"method", "path", "status", "durationMs"} <= r.keys() for r in answered)
    # the authorizer logs every decision, with the reason of a refusal
    assert any(r.get("message") == "authorized" for r in authorizer)
    reasons = {r.get("reason") for r in authorizer if r.get("message") == "refused"}
    assert {"missing_key", "malformed_key", "unknown_key", "revoked_key"} <= reasons
    assert any(
        r.get("message") == "revoked key" and r.get("keyId") == traffic.revoked_key_id for r in authorizer
    )
    # the API functions log the refusals they answer
    refused = {
        (r.get("function_name"), r.get("code")) for r in handlers if r.get("message") == "request refused"
    }
    assert {
        ("CurrentFunction", "forbidden"),
        ("CurrentFunction", "developer_not_found"),
        ("TrackFunction", "idempotency_key_reused"),
    } <= refused


REQUEST_LINE = re.compile(r"\d\d:\d\d:\d\d (?P<method>[A-Z]+) (?P<path>/\S*) (?P<status>\d{3}) \d+ ms")


def test_the_terminal_shows_one_readable_line_per_request(traffic: Traffic) -> None:
    lines = [REQUEST_LINE.fullmatch(line) for line in traffic.terminal.splitlines()]
    requests = [(m["method"], m["path"], m["status"]) for m in lines if m is not None]
    assert len(requests) == traffic.requests
    assert {
        ("POST", "/v1/usage/events", "200"),
        ("GET", "/v1/usage/history", "200"),
        ("GET", "/v1/usage", "404"),
        ("GET", "/v1/usage", "401"),
        ("POST", "/v1/usage/events", "415"),
    } <= set(requests)
    assert _records(traffic.terminal) == []  # no JSON: that is in the log file
    assert "logs            .local/dev.log" in traffic.terminal  # the banner says where
