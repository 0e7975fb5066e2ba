"""The synchronous client: `UsageMeter`, with `usage` and `entitlements` resources."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import Concatenate, ParamSpec, Self, TypeVar

import httpx

from ._batching import Batcher, BatchOptions, batch_options
from ._calls import Call, EntitlementCalls, EventCalls, Resource, UsageCalls, method_like, next_page
from ._core import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    Request,
    Settings,
    connection_error,
    error_from_response,
)
from ._errors import UsageMeterError
from ._models import EventPage, EventResult, LoggedEvent, UsageEvent

logger = logging.getLogger("usage_meter_client")


class UsageMeter:
    """A client of the Usage Meter API.

    ```python
    with UsageMeter(api_key="um_live_...", base_url="https://...") as client:
        usage = client.usage.current()
        client.usage.track(metric="api_calls", quantity=1)
    ```

    `api_key` and `base_url` default to `USAGE_METER_API_KEY` and `USAGE_METER_BASE_URL`.
    Failed calls are retried `max_retries` times (network errors, timeouts, 5xx, the
    gateway's throttling) with exponential backoff and full jitter; a track call's retries
    carry the same idempotency key, so the event is counted once. `timeout` (seconds, or an
    `httpx.Timeout`) applies to each attempt. Pass `http_client` to reuse your own
    `httpx.Client` (not closed by this client), or `transport` to give the one it creates.

    `batching=True` (or a `BatchOptions`) starts a background sender for `usage.submit`:
    events are sent 100 to a request, or when the oldest has waited 250 ms, and on `flush`,
    `close` or interpreter exit.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        batching: bool | BatchOptions = False,
    ) -> None:
        if http_client is not None and transport is not None:
            raise ValueError("give http_client or transport, not both")
        self._settings = Settings.create(
            api_key, base_url, timeout, max_retries, backoff, max_backoff, default_headers
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=self._settings.timeout, transport=transport)
        self._sleep: Callable[[float], None] = time.sleep
        options = batch_options(batching)
        self._batcher = (
            Batcher(self._send, self._settings, options, lambda delay: self._sleep(delay))
            if options is not None
            else None
        )
        self.usage = Usage(self)
        self.entitlements = Entitlements(self)

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    @property
    def max_retries(self) -> int:
        return self._settings.max_retries

    def flush(self, timeout: float | None = None) -> bool:
        """With batching: send what is queued now and wait for every submitted event's result
        (False when `timeout` seconds passed first). Without batching there is nothing to send."""
        return self._batcher.flush(timeout) if self._batcher is not None else True

    def close(self) -> None:
        """Send the events still queued (with batching), then close the HTTP connections (unless
        the httpx client was given by the caller)."""
        if self._batcher is not None:
            self._batcher.close()
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, request: Request) -> httpx.Response:
        """Send the request, retrying what may be retried; a non-2xx answer raises its typed error."""
        attempt = 0
        while True:
            error: UsageMeterError
            try:
                response = self._http.request(
                    request.method,
                    self._settings.url(request),
                    params=request.params,
                    content=request.body,
                    headers=self._settings.request_headers(request),
                    timeout=self._settings.timeout,
                )
            except httpx.TransportError as exc:
                error = connection_error(exc)
            else:
                if response.is_success:
                    return response
                error = error_from_response(response)
            delay = self._settings.retry_delay(attempt, error)
            if delay is None:
                raise error
            attempt += 1
            logger.info(
                "retrying %s %s in %.2f s (attempt %d of %d): %s",
                request.method,
                request.path,
                delay,
                attempt,
                self._settings.max_retries,
                error,
            )
            self._sleep(delay)

    def _run(self, call: Call[T]) -> T:
        return call.read(self._send(call.request))

    def _queue(self, event: UsageEvent) -> Future[EventResult]:
        if self._batcher is None:
            raise RuntimeError("submit needs UsageMeter(..., batching=True); use track() otherwise")
        return self._batcher.submit(event)


T = TypeVar("T")
P = ParamSpec("P")


_Resource = Resource[UsageMeter]


def _sent(build: Callable[P, Call[T]]) -> Callable[Concatenate[_Resource, P], T]:
    """The method sending `build`'s call and answering what it reads."""

    def method(resource: _Resource, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return resource._client._run(build(*args, **kwargs))

    return method_like(method, build)


def _paged(build: Callable[P, Call[EventPage]]) -> Callable[Concatenate[_Resource, P], Iterator[LoggedEvent]]:
    """The method iterating every event of the pages from `build`'s call on."""

    def method(resource: _Resource, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[LoggedEvent]:
        call: Call[EventPage] | None = build(*args, **kwargs)
        while call is not None:
            page = resource._client._run(call)
            yield from page.events
            call = next_page(call, page)

    return method_like(method, build)


def _queued(build: Callable[P, UsageEvent]) -> Callable[Concatenate[_Resource, P], Future[EventResult]]:
    """The method handing `build`'s event to the background sender."""

    def method(resource: _Resource, /, *args: P.args, **kwargs: P.kwargs) -> Future[EventResult]:
        return resource._client._queue(build(*args, **kwargs))

    return method_like(method, build)


class Usage(_Resource):
    """`client.usage`: current usage, history, tracking."""

    def __init__(self, client: UsageMeter) -> None:
        super().__init__(client)
        self.events = Events(client)

    current = _sent(UsageCalls.current)
    history = _sent(UsageCalls.history)
    history_csv = _sent(UsageCalls.history_csv)
    track = _sent(UsageCalls.track)
    submit = _queued(UsageCalls.submit)
    track_batch = _sent(UsageCalls.track_batch)


class Entitlements(_Resource):
    """`client.entitlements`: may the developer use a metric now?"""

    get = _sent(EntitlementCalls.get)
    check = _sent(EntitlementCalls.check)


class Events(_Resource):
    """`client.usage.events`: the event log, and corrections (service keys)."""

    page = _sent(EventCalls.page)
    list = _paged(EventCalls.list)
    cancel = _sent(EventCalls.cancel)
    amend = _sent(EventCalls.amend)
