"""The asyncio client: `AsyncUsageMeter`, the twin of `UsageMeter` with awaitable methods."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

import httpx

from ._batching import AsyncBatcher, BatchOptions, batch_options
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


class AsyncUsageMeter:
    """The asyncio twin of `UsageMeter`: same arguments, same results, awaitable methods.

    ```python
    async with AsyncUsageMeter(api_key="um_live_...", base_url="https://...") as client:
        usage = await client.usage.current()
    ```
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
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        batching: bool | BatchOptions = False,
    ) -> None:
        if http_client is not None and transport is not None:
            raise ValueError("give http_client or transport, not both")
        self._settings = Settings.create(
            api_key, base_url, timeout, max_retries, backoff, max_backoff, default_headers
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=self._settings.timeout, transport=transport)
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        options = batch_options(batching)
        self._batcher = (
            AsyncBatcher(self._send, self._settings, options, lambda delay: self._sleep(delay))
            if options is not None
            else None
        )
        self.usage = AsyncUsage(self)
        self.entitlements = AsyncEntitlements(self)

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    @property
    def max_retries(self) -> int:
        return self._settings.max_retries

    async def flush(self) -> None:
        """With batching: send what is queued now and wait for every submitted event's result."""
        if self._batcher is not None:
            await self._batcher.flush()

    async def close(self) -> None:
        """Send the events still queued (with batching), then close the HTTP connections (unless
        the httpx client was given by the caller)."""
        if self._batcher is not None:
            await self._batcher.close()
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _send(self, request: Request) -> httpx.Response:
        """Send the request, retrying what may be retried; a non-2xx answer raises its typed error."""
        attempt = 0
        while True:
            error: UsageMeterError
            try:
                response = await self._http.request(
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
            await self._sleep(delay)

    async def _run(self, call: Call[T]) -> T:
        return call.read(await self._send(call.request))

    async def _queue(self, event: UsageEvent) -> asyncio.Future[EventResult]:
        if self._batcher is None:
            raise RuntimeError("submit needs AsyncUsageMeter(..., batching=True); use track() otherwise")
        return await self._batcher.submit(event)


T = TypeVar("T")
P = ParamSpec("P")


_Resource = Resource[AsyncUsageMeter]


def _sent(build: Callable[P, Call[T]]) -> Callable[Concatenate[_Resource, P], Coroutine[Any, Any, T]]:
    """The coroutine method sending `build`'s call and answering what it reads."""

    async def method(resource: _Resource, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await resource._client._run(build(*args, **kwargs))

    return method_like(method, build)


def _paged(
    build: Callable[P, Call[EventPage]],
) -> Callable[Concatenate[_Resource, P], AsyncIterator[LoggedEvent]]:
    """The method iterating (async for) every event of the pages from `build`'s call on."""

    async def method(resource: _Resource, /, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[LoggedEvent]:
        call: Call[EventPage] | None = build(*args, **kwargs)
        while call is not None:
            page = await resource._client._run(call)
            for event in page.events:
                yield event
            call = next_page(call, page)

    return method_like(method, build)


def _queued(
    build: Callable[P, UsageEvent],
) -> Callable[Concatenate[_Resource, P], Coroutine[Any, Any, asyncio.Future[EventResult]]]:
    """The coroutine method handing `build`'s event to the background sender."""

    async def method(
        resource: _Resource, /, *args: P.args, **kwargs: P.kwargs
    ) -> asyncio.Future[EventResult]:
        return await resource._client._queue(build(*args, **kwargs))

    return method_like(method, build)


class AsyncUsage(_Resource):
    """`client.usage`: current usage, history, tracking (awaitable)."""

    def __init__(self, client: AsyncUsageMeter) -> None:
        super().__init__(client)
        self.events = AsyncEvents(client)

    current = _sent(UsageCalls.current)
    history = _sent(UsageCalls.history)
    history_csv = _sent(UsageCalls.history_csv)
    track = _sent(UsageCalls.track)
    submit = _queued(UsageCalls.submit)
    track_batch = _sent(UsageCalls.track_batch)


class AsyncEntitlements(_Resource):
    """`client.entitlements`: may the developer use a metric now? (awaitable)"""

    get = _sent(EntitlementCalls.get)
    check = _sent(EntitlementCalls.check)


class AsyncEvents(_Resource):
    """`client.usage.events`: the event log, and corrections (service keys)."""

    page = _sent(EventCalls.page)
    list = _paged(EventCalls.list)
    cancel = _sent(EventCalls.cancel)
    amend = _sent(EventCalls.amend)
