"""Background batching: events queued by `usage.submit`, sent 100 to a request.

One sender (a thread, or a task for the async client) takes the queue's oldest events when
100 are waiting, when the oldest has waited `flush_interval`, or on `flush`/`close`. Each
event's idempotency key and timestamp are made when it is submitted, so every send of it is
the same event: the whole request is retried with identical bytes by the client's own retry
loop, and events answered `temporarily_unavailable` are resent with their first key and time.
Memory is bounded by `max_pending` (queued plus in flight): past it `submit` blocks or raises,
it never drops an event.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from . import _json
from ._core import Request, Settings, event_wire, parse
from ._errors import UsageMeterError
from ._models import BatchResult, EventResult, UsageEvent

logger = logging.getLogger("usage_meter_client")

WhenFull = Literal["block", "raise"]
UNAVAILABLE = "temporarily_unavailable"


class QueueFullError(UsageMeterError):
    """`submit` found `max_pending` events unsent (with `when_full="raise"`, or after `block_timeout`)."""


@dataclass(frozen=True)
class BatchOptions:
    """How `UsageMeter(batching=...)` batches; `batching=True` takes these defaults.

    `max_batch` events (at most 100) go in one request, sent when that many wait or the oldest
    has waited `flush_interval` seconds. At most `max_pending` events are queued or in flight:
    then `submit` waits (`when_full="block"`, up to `block_timeout` seconds, None: as long as it
    takes) or raises `QueueFullError` at once (`"raise"`). Events answered
    `temporarily_unavailable` are resent up to `resends` times, with backoff.
    """

    max_batch: int = 100
    flush_interval: float = 0.25
    max_pending: int = 10_000
    when_full: WhenFull = "block"
    block_timeout: float | None = None
    resends: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch <= 100:
            raise ValueError("max_batch must be 1-100 (the API takes 100 events a request)")
        if self.max_pending < self.max_batch:
            raise ValueError("max_pending must be at least max_batch")
        if self.flush_interval <= 0:
            raise ValueError("flush_interval must be > 0")
        if self.when_full not in ("block", "raise"):
            raise ValueError('when_full is "block" or "raise"')


def batch_options(batching: bool | BatchOptions) -> BatchOptions | None:
    if isinstance(batching, BatchOptions):
        return batching
    return BatchOptions() if batching else None


@dataclass
class Pending:
    """One submitted event: its wire form (key and time fixed) and where its result goes."""

    wire: dict[str, Any]
    settle: Callable[[EventResult | BaseException], None]
    queued_at: float = field(default_factory=time.monotonic)


def batch_request(batch: Iterable[Pending]) -> Request:
    return Request("POST", "/v1/usage/events", body=_json.dumps({"events": [p.wire for p in batch]}))


def resend_or_settle(
    batch: list[Pending], answer: BatchResult, attempt: int, options: BatchOptions
) -> list[Pending]:
    """Hand each event its result; return those to resend (answered temporarily_unavailable
    while resends are left: once they are spent, that answer is their result)."""
    again: list[Pending] = []
    for pending, result in zip(batch, answer.results, strict=True):
        unavailable = result.error is not None and result.error.code == UNAVAILABLE
        if unavailable and attempt < options.resends:
            again.append(pending)
        else:
            pending.settle(result)
    return again


def read_answer(response: httpx.Response, batch: list[Pending]) -> BatchResult:
    answer = parse(response, BatchResult)
    if len(answer.results) != len(batch):
        raise UsageMeterError(
            f"the service answered {len(answer.results)} results for {len(batch)} events",
            status=response.status_code,
            code="invalid_response",
            response=response,
        )
    return answer


def settle_all(batch: Iterable[Pending], outcome: EventResult | BaseException) -> None:
    for pending in batch:
        pending.settle(outcome)


def ready(queue: deque[Pending], options: BatchOptions, urgent: bool) -> bool:
    """Is a batch due: a full one waits, the oldest event has waited long enough, or a flush asks."""
    if not queue:
        return False
    if urgent or len(queue) >= options.max_batch:
        return True
    return time.monotonic() - queue[0].queued_at >= options.flush_interval


def take(queue: deque[Pending], options: BatchOptions) -> list[Pending]:
    return [queue.popleft() for _ in range(min(options.max_batch, len(queue)))]


def wait_time(queue: deque[Pending], options: BatchOptions) -> float | None:
    if not queue:
        return None
    return max(0.0, options.flush_interval - (time.monotonic() - queue[0].queued_at))


def full_error(options: BatchOptions) -> QueueFullError:
    return QueueFullError(
        f"{options.max_pending} events are waiting to be sent; slow down or raise max_pending",
        code="queue_full",
    )


def _closer(ref: weakref.ref[Batcher]) -> Callable[[], None]:
    def close() -> None:
        batcher = ref()
        if batcher is not None:
            batcher.close()

    return close


class Batcher:
    """The sync client's sender thread (started by the first `submit`, stopped by `close`)."""

    def __init__(
        self,
        send: Callable[[Request], httpx.Response],
        settings: Settings,
        options: BatchOptions,
        sleep: Callable[[float], None],
    ) -> None:
        self._send = send
        self._settings = settings
        self.options = options
        self._sleep = sleep
        self._cond = threading.Condition()
        self._queue: deque[Pending] = deque()
        self._unfinished = 0  # queued or in flight
        self._flushing = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        # events submitted and never closed are still sent when the interpreter exits
        self._at_exit = _closer(weakref.ref(self))
        atexit.register(self._at_exit)

    @property
    def pending(self) -> int:
        """Events submitted and not settled yet."""
        return self._unfinished

    def submit(self, event: UsageEvent) -> Future[EventResult]:
        future: Future[EventResult] = Future()
        pending = Pending(event_wire(event), lambda outcome: self._settle(future, outcome))
        with self._cond:
            if self._closed:
                raise RuntimeError("the client is closed")
            self._make_room()
            self._queue.append(pending)
            self._unfinished += 1
            self._start()
            self._cond.notify_all()
        return future

    def _make_room(self) -> None:
        if self._unfinished < self.options.max_pending:
            return
        if self.options.when_full == "raise":
            raise full_error(self.options)
        room = self._cond.wait_for(
            lambda: self._unfinished < self.options.max_pending, self.options.block_timeout
        )
        if not room:
            raise full_error(self.options)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="usage-meter-batcher", daemon=True)
            self._thread.start()

    def _settle(self, future: Future[EventResult], outcome: EventResult | BaseException) -> None:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
        with self._cond:
            self._unfinished -= 1
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Send what is queued now and wait until every submitted event has its result."""
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._unfinished == 0, timeout)
            finally:
                self._flushing -= 1

    def close(self) -> None:
        """Send everything submitted, then stop the sender."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        atexit.unregister(self._at_exit)

    def _next(self) -> list[Pending] | None:
        with self._cond:
            while True:
                if ready(self._queue, self.options, self._closed or self._flushing > 0):
                    return take(self._queue, self.options)
                if self._closed and not self._queue:
                    return None
                self._cond.wait(wait_time(self._queue, self.options))

    def _run(self) -> None:
        while (batch := self._next()) is not None:
            self._deliver(batch)

    def _deliver(self, batch: list[Pending]) -> None:
        """Send one batch; resend its temporarily_unavailable events; every event ends settled."""
        attempt = 0
        while batch:
            try:
                answer = read_answer(self._send(batch_request(batch)), batch)
            except Exception as exc:  # the whole request failed after the client's retries
                logger.warning("a batch of %d events failed: %s", len(batch), exc)
                settle_all(batch, exc)
                return
            batch = resend_or_settle(batch, answer, attempt, self.options)
            if batch:
                self._sleep(self._settings.backoff_delay(attempt))
            attempt += 1


class AsyncBatcher:
    """The async client's sender task (started by the first `submit` on the running loop)."""

    def __init__(
        self,
        send: Callable[[Request], Awaitable[httpx.Response]],
        settings: Settings,
        options: BatchOptions,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._send = send
        self._settings = settings
        self.options = options
        self._sleep = sleep
        self._cond: asyncio.Condition | None = None
        self._queue: deque[Pending] = deque()
        self._unfinished = 0
        self._flushing = 0
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return self._unfinished

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def submit(self, event: UsageEvent) -> asyncio.Future[EventResult]:
        future: asyncio.Future[EventResult] = asyncio.get_running_loop().create_future()
        pending = Pending(event_wire(event), lambda outcome: self._settle(future, outcome))
        cond = self._condition()
        async with cond:
            if self._closed:
                raise RuntimeError("the client is closed")
            await self._make_room(cond)
            self._queue.append(pending)
            self._unfinished += 1
            if self._task is None:
                self._task = asyncio.create_task(self._run(), name="usage-meter-batcher")
            cond.notify_all()
        return future

    async def _make_room(self, cond: asyncio.Condition) -> None:
        if self._unfinished < self.options.max_pending:
            return
        if self.options.when_full == "raise":
            raise full_error(self.options)
        try:
            await asyncio.wait_for(
                cond.wait_for(lambda: self._unfinished < self.options.max_pending),
                self.options.block_timeout,
            )
        except TimeoutError:
            raise full_error(self.options) from None

    def _settle(self, future: asyncio.Future[EventResult], outcome: EventResult | BaseException) -> None:
        if not future.done():
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        self._unfinished -= 1

    async def _notify(self) -> None:
        cond = self._condition()
        async with cond:
            cond.notify_all()

    async def flush(self) -> None:
        """Send what is queued now and wait until every submitted event has its result."""
        cond = self._condition()
        async with cond:
            self._flushing += 1
            cond.notify_all()
            try:
                await cond.wait_for(lambda: self._unfinished == 0)
            finally:
                self._flushing -= 1

    async def close(self) -> None:
        """Send everything submitted, then stop the sender."""
        cond = self._condition()
        async with cond:
            self._closed = True
            cond.notify_all()
        if self._task is not None:
            await self._task

    async def _next(self) -> list[Pending] | None:
        cond = self._condition()
        async with cond:
            while True:
                if ready(self._queue, self.options, self._closed or self._flushing > 0):
                    return take(self._queue, self.options)
                if self._closed and not self._queue:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(cond.wait(), wait_time(self._queue, self.options))

    async def _run(self) -> None:
        while (batch := await self._next()) is not None:
            await self._deliver(batch)
            await self._notify()

    async def _deliver(self, batch: list[Pending]) -> None:
        attempt = 0
        while batch:
            try:
                answer = read_answer(await self._send(batch_request(batch)), batch)
            except Exception as exc:
                logger.warning("a batch of %d events failed: %s", len(batch), exc)
                settle_all(batch, exc)
                return
            batch = resend_or_settle(batch, answer, attempt, self.options)
            if batch:
                await self._sleep(self._settings.backoff_delay(attempt))
            attempt += 1
