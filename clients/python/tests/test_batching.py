"""Background batching against `httpx.MockTransport`: sizes, timing, back-pressure, resends."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from usage_meter_client import (
    AsyncUsageMeter,
    BatchOptions,
    QueueFullError,
    UsageMeter,
    ValidationError,
)

KEY = "um_live_" + "a" * 32
BASE = "https://usage.example.test"


class Service:
    """Answers each batch event by event; `unavailable` keys are answered temporarily_unavailable
    the first time they are seen; `gate` holds every answer until set."""

    def __init__(self, *, unavailable: frozenset[str] = frozenset(), gate: threading.Event | None = None):
        self.batches: list[list[dict[str, Any]]] = []
        self.bodies: list[bytes] = []
        self.unavailable = set(unavailable)
        self.gate = gate
        self.lock = threading.Lock()

    def result(self, index: int, event: dict[str, Any]) -> dict[str, Any]:
        key = event["idempotencyKey"]
        if key in self.unavailable:
            self.unavailable.discard(key)
            error = {"code": "temporarily_unavailable", "message": "busy"}
            return {"index": index, "status": "rejected", "idempotencyKey": key, "error": error}
        return {"index": index, "status": "recorded", "idempotencyKey": key, "recordedAt": event["timestamp"]}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.gate is not None:
            self.gate.wait(5)
        events = json.loads(request.content)["events"]
        with self.lock:
            self.batches.append(events)
            self.bodies.append(request.content)
            results = [self.result(i, e) for i, e in enumerate(events)]
        recorded = sum(r["status"] == "recorded" for r in results)
        body = {
            "results": results,
            "recorded": recorded,
            "duplicates": 0,
            "rejected": len(results) - recorded,
        }
        return httpx.Response(200, json=body)

    @property
    def sent(self) -> list[dict[str, Any]]:
        return [event for batch in self.batches for event in batch]


def client(handler: Callable[[httpx.Request], httpx.Response], **options: Any) -> UsageMeter:
    made = UsageMeter(
        api_key=KEY,
        base_url=BASE,
        transport=httpx.MockTransport(handler),
        batching=BatchOptions(**options),
    )
    made._sleep = lambda _: None
    return made


def test_events_go_100_to_a_request_each_with_its_own_key_and_result() -> None:
    service = Service()
    with client(service, flush_interval=60) as meter:
        futures = [meter.usage.submit("api_calls", i + 1, developer_id="dev_1") for i in range(250)]
        assert meter.flush(timeout=5)
    assert [len(b) for b in service.batches] == [100, 100, 50]
    sent = service.sent
    assert [e["quantity"] for e in sent] == list(range(1, 251))
    assert len({e["idempotencyKey"] for e in sent}) == 250
    results = [f.result(0) for f in futures]
    assert [r.idempotency_key for r in results] == [e["idempotencyKey"] for e in sent]
    assert {r.status for r in results} == {"recorded"}


def test_a_lone_event_is_sent_after_the_interval_and_close_sends_the_rest() -> None:
    service = Service()
    meter = client(service, flush_interval=0.05)
    started = time.monotonic()
    first = meter.usage.submit("api_calls", developer_id="dev_1")
    assert first.result(timeout=2).status == "recorded"
    assert time.monotonic() - started >= 0.05
    last = [meter.usage.submit("api_calls", developer_id="dev_1") for _ in range(3)]
    meter.close()  # well before another interval: close sends them
    assert all(f.done() for f in last)
    assert [len(b) for b in service.batches] == [1, 3]
    with pytest.raises(RuntimeError, match="closed"):
        meter.usage.submit("api_calls", developer_id="dev_1")


def test_unavailable_events_are_resent_with_their_first_key_and_time() -> None:
    probe = Service()
    with client(probe, flush_interval=60) as meter:
        futures = [meter.usage.submit("api_calls", developer_id="dev_1") for _ in range(5)]
        meter.flush(5)
    keys = [e["idempotencyKey"] for e in probe.sent]
    service = Service(unavailable=frozenset(keys[1:3]))
    # the same events again (as a process restarted with its queue would send them)
    with client(service, flush_interval=60) as meter:
        futures = [
            meter.usage.submit("api_calls", idempotency_key=e["idempotencyKey"], timestamp=e["timestamp"])
            for e in probe.sent
        ]
        meter.flush(5)
    assert [len(b) for b in service.batches] == [5, 2]
    assert service.batches[1] == service.batches[0][1:3]  # identical events: same key, same time
    assert [f.result(0).status for f in futures] == ["recorded"] * 5


def test_a_failed_request_is_retried_with_identical_bytes() -> None:
    service = Service()
    failures = iter([httpx.Response(503, json={"error": {"code": "temporarily_unavailable"}})])

    def flaky(request: httpx.Request) -> httpx.Response:
        service.bodies.append(request.content)
        return next(failures, None) or service(request)

    with client(flaky, flush_interval=60) as meter:
        futures = [meter.usage.submit("api_calls", developer_id="dev_1") for _ in range(3)]
        meter.flush(5)
    assert service.bodies[0] == service.bodies[1]
    assert [f.result(0).status for f in futures] == ["recorded"] * 3


def test_a_refused_batch_fails_each_future_with_the_error() -> None:
    refused = httpx.Response(422, json={"error": {"code": "validation_error", "message": "no"}})
    with client(lambda _: refused, flush_interval=60) as meter:
        futures = [meter.usage.submit("api_calls", developer_id="dev_1") for _ in range(2)]
        meter.flush(5)
    for future in futures:
        with pytest.raises(ValidationError):
            future.result(0)


def test_a_full_queue_raises_or_blocks_and_never_drops() -> None:
    gate = threading.Event()
    service = Service(gate=gate)
    raising = client(service, max_batch=2, max_pending=4, when_full="raise", flush_interval=0.01)
    accepted = [raising.usage.submit("api_calls", developer_id="dev_1") for _ in range(4)]
    with pytest.raises(QueueFullError):
        raising.usage.submit("api_calls", developer_id="dev_1")
    blocking = client(service, max_batch=2, max_pending=2, block_timeout=0.05, flush_interval=0.01)
    accepted += [blocking.usage.submit("api_calls", developer_id="dev_1") for _ in range(2)]
    with pytest.raises(QueueFullError):
        blocking.usage.submit("api_calls", developer_id="dev_1")  # waited 50 ms for room
    assert blocking._batcher is not None
    blocking._batcher.options = replace(blocking._batcher.options, block_timeout=5)
    threading.Timer(0.05, gate.set).start()
    accepted.append(blocking.usage.submit("api_calls", developer_id="dev_1"))  # waits, then goes
    raising.close()
    blocking.close()
    assert len(service.sent) == len(accepted) == 7
    assert {f.result(0).status for f in accepted} == {"recorded"}


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="100"):
        BatchOptions(max_batch=101)
    with pytest.raises(ValueError, match="when_full"):
        BatchOptions(when_full="drop")  # type: ignore[arg-type]
    with (
        UsageMeter(api_key=KEY, base_url=BASE) as plain,
        pytest.raises(RuntimeError, match="batching=True"),
    ):
        plain.usage.submit("api_calls")


def test_async_batching_sends_in_hundreds_and_close_sends_the_rest() -> None:
    service = Service(unavailable=frozenset())

    async def scenario() -> list[str]:
        async with AsyncUsageMeter(
            api_key=KEY, base_url=BASE, transport=httpx.MockTransport(service), batching=True
        ) as meter:
            futures = [await meter.usage.submit("api_calls", developer_id="dev_1") for _ in range(150)]
            await meter.flush()
            assert all(f.done() for f in futures)
            late = await meter.usage.submit("api_calls", developer_id="dev_1")
        return [(await f).status for f in [*futures, late]]

    assert asyncio.run(scenario()) == ["recorded"] * 151
    assert [len(b) for b in service.batches] == [100, 50, 1]


def test_async_full_queue_raises() -> None:
    async def scenario() -> None:
        service = Service()
        meter = AsyncUsageMeter(
            api_key=KEY,
            base_url=BASE,
            transport=httpx.MockTransport(service),
            batching=BatchOptions(max_batch=1, max_pending=1, when_full="raise"),
        )
        first = await meter.usage.submit("api_calls", developer_id="dev_1")
        with pytest.raises(QueueFullError):
            await meter.usage.submit("api_calls", developer_id="dev_1")
        await meter.close()
        assert (await first).status == "recorded"

    asyncio.run(scenario())


def test_once_resends_are_spent_the_event_keeps_the_services_answer() -> None:
    service = Service()
    with client(service, flush_interval=60, resends=0) as meter:
        service.unavailable = {"k-1"}
        future = meter.usage.submit("api_calls", idempotency_key="k-1", developer_id="dev_1")
        meter.flush(5)
    result = future.result(0)
    assert (result.status, result.error and result.error.code) == ("rejected", "temporarily_unavailable")
    assert len(service.batches) == 1
