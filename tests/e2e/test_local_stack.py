"""curl-level checks through the local gateway: what a user of `make dev` sees."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from typing import Any
from urllib.parse import urlsplit

import pytest

from usage_meter_local.dev import DEMO_DEVELOPER

from e2e.conftest import printed_commands
from helpers import shell_without_aws

pytestmark = pytest.mark.e2e


def http(
    stack: dict[str, Any], method: str, path: str, *, key: str | None = None, body: Any = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{stack['base']}{path}", data=data, method=method)  # noqa: S310
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    return _send(request)


def _send(request: urllib.request.Request) -> tuple[int, Any]:
    """Status and JSON body of the answer, whatever the status."""
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - 127.0.0.1 only
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_track_duplicate_current_history(local_stack: dict[str, Any]) -> None:
    key, service = local_stack["developerKey"], local_stack["serviceKey"]
    idem = f"e2e-{uuid.uuid4()}"
    event = {"developerId": "dev_demo", "metric": "e2e_calls", "quantity": 2, "idempotencyKey": idem}
    before = http(local_stack, "GET", "/v1/usage?metric=e2e_calls", key=key)[1]["metrics"]["e2e_calls"][
        "consumed"
    ]

    status, first = http(local_stack, "POST", "/v1/usage/events", key=service, body=event)
    assert status == 200
    assert first["results"][0]["status"] == "recorded"
    assert first["usage"]["consumed"] == before + 2

    status, again = http(local_stack, "POST", "/v1/usage/events", key=service, body=event)
    assert status == 200
    assert again["results"][0]["status"] == "duplicate"
    assert again["results"][0]["recordedAt"] == first["results"][0]["recordedAt"]

    status, current = http(local_stack, "GET", "/v1/usage", key=key)
    assert status == 200
    assert current["developerId"] == "dev_demo"
    assert current["plan"] == "pro"
    assert current["metrics"]["e2e_calls"]["consumed"] == before + 2

    status, history = http(local_stack, "GET", "/v1/usage/history?days=3&metric=e2e_calls", key=key)
    assert status == 200
    assert len(history["entries"]) == 3
    assert history["entries"][-1]["metrics"]["e2e_calls"] >= 2


def test_service_key_acts_for_the_demo_developer(local_stack: dict[str, Any]) -> None:
    status, body = http(local_stack, "GET", "/v1/usage?developerId=dev_demo", key=local_stack["serviceKey"])
    assert status == 200
    assert body["developerId"] == "dev_demo"
    status, body = http(local_stack, "GET", "/v1/usage?developerId=dev_nobody", key=local_stack["serviceKey"])
    assert (status, body["error"]["code"]) == (404, "developer_not_found")


@pytest.mark.parametrize(
    ("key", "code"),
    [(None, "unauthorized"), ("um_live_" + "x" * 32, "unauthorized"), ("not-a-key", "unauthorized")],
)
def test_bad_keys_are_401(local_stack: dict[str, Any], key: str | None, code: str) -> None:
    status, body = http(local_stack, "GET", "/v1/usage", key=key)
    assert (status, body["error"]["code"]) == (401, code)


def test_developer_key_for_another_developer_is_403(local_stack: dict[str, Any]) -> None:
    status, body = http(
        local_stack, "GET", "/v1/usage/history?developerId=dev_other", key=local_stack["developerKey"]
    )
    assert (status, body["error"]["code"]) == (403, "forbidden")


def test_developer_key_cannot_track(local_stack: dict[str, Any]) -> None:
    key = local_stack["developerKey"]
    for body in (
        {"metric": "e2e_pre_claim", "quantity": 1, "idempotencyKey": f"invoice-{uuid.uuid4()}"},
        {"events": [{"metric": "e2e_pre_claim", "quantity": 1, "developerId": "dev_demo"}]},
    ):
        status, answer = http(local_stack, "POST", "/v1/usage/events", key=key, body=body)
        assert (status, answer) == (
            403,
            {"error": {"code": "forbidden", "message": "tracking needs a service key"}},
        )
    status, current = http(local_stack, "GET", "/v1/usage?metric=e2e_pre_claim", key=key)
    assert current["metrics"]["e2e_pre_claim"]["consumed"] == 0


def test_bad_input_is_4xx_never_5xx(local_stack: dict[str, Any]) -> None:
    key = local_stack["serviceKey"]
    event = {"developerId": "dev_demo", "metric": "x", "quantity": 0}
    status, body = http(local_stack, "POST", "/v1/usage/events", key=key, body=event)
    assert (status, body["error"]["code"]) == (422, "validation_error")
    status, body = http(local_stack, "POST", "/v1/usage/events", key=key, body={"events": [{}] * 101})
    assert (status, body["error"]["code"]) == (422, "validation_error")


def test_openapi_is_public(local_stack: dict[str, Any]) -> None:
    status, body = http(local_stack, "GET", "/v1/openapi.json")
    assert status == 200
    assert "/v1/usage/events" in body["paths"]


# ---- a burst of connections ------------------------------------------------------------------------

BURST = 256
# The kernel answers a queued connection at once; a dropped one is retried by the client's
# kernel after 1 s (then 3 s, 7 s...). A connection not made within a second was dropped.
CONNECT_SECONDS = 1.0
ANSWER_SECONDS = 120.0


def _connect_and_get(port: int, start: threading.Barrier) -> str:
    """Connect when every client is ready, then GET the (public) OpenAPI document: "200", or
    what went wrong."""
    start.wait(timeout=60)
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_SECONDS)
    except OSError as exc:
        return f"connect: {exc!r}"
    sock.settimeout(ANSWER_SECONDS)
    connection = HTTPConnection("127.0.0.1", port)
    connection.sock = sock
    try:
        connection.request("GET", "/v1/openapi.json")
        answer = connection.getresponse()
        answer.read()
        return str(answer.status)
    except OSError as exc:
        return f"answer: {exc!r}"
    finally:
        connection.close()


def test_a_burst_of_256_connections_all_get_an_answer(local_stack: dict[str, Any]) -> None:
    """API Gateway queues a burst instead of refusing it; so must the local gateway."""
    port = urlsplit(local_stack["base"]).port
    assert port is not None
    start = threading.Barrier(BURST)
    with ThreadPoolExecutor(max_workers=BURST) as clients:
        outcomes = Counter(clients.map(lambda _: _connect_and_get(port, start), range(BURST)))
    assert outcomes == {"200": BURST}


# ---- what `make dev` prints works as printed -----------------------------------------------------


def _curl(argv: list[str]) -> tuple[int, Any]:
    """Do what a printed `curl -s [-X METHOD] [-H HEADER]... [-d DATA] URL` does."""
    assert argv[0] == "curl"
    method, headers, data, url = None, {}, None, None
    words = iter(argv[1:])
    for word in words:
        if word == "-X":
            method = next(words)
        elif word == "-H":
            name, _, value = next(words).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            data = next(words).encode()
        elif word != "-s":
            assert not word.startswith("-"), f"a curl option the test does not know: {word}"
            url = word
    assert url is not None
    return _send(urllib.request.Request(url, data=data, headers=headers, method=method))  # noqa: S310


def test_every_printed_line_works_as_printed(local_stack: dict[str, Any]) -> None:
    commands = printed_commands(local_stack)
    curls = [shlex.split(c) for c in commands if c.startswith("curl ")]
    admin_lines = [c for c in commands if "usage-meter " in c]
    assert (len(curls), len(admin_lines), len(commands)) == (3, 1, 4)

    for argv in curls:
        status, body = _curl(argv)
        assert status == 200, (argv, body)

    # the admin CLI line, run from where the stack runs, in a shell without any AWS settings
    cli = subprocess.run(
        shlex.split(admin_lines[0]),
        cwd=local_stack["folder"],
        env=shell_without_aws(local_stack["folder"]),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (cli.returncode, cli.stderr) == (0, "")
    assert f"{DEMO_DEVELOPER}\tpro\t" in cli.stdout
    assert admin_lines[0].endswith(" --local developers list")  # found through ./.local/env
