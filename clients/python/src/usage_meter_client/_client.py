"""The synchronous client: `UsageMeter`, with `usage` and `entitlements` resources."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Self

import httpx

from ._batching import Batcher, BatchOptions, batch_options
from ._core import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    Filters,
    GroupBy,
    ModelT,
    Request,
    Settings,
    batch_request,
    connection_error,
    correction_request,
    current_request,
    entitlement_request,
    error_from_response,
    events_request,
    history_request,
    parse,
    track_request,
)
from ._errors import UsageMeterError
from ._models import (
    BatchResult,
    Correction,
    CurrentUsage,
    Entitlement,
    EventPage,
    EventResult,
    Granularity,
    History,
    LoggedEvent,
    LogStatus,
    PeriodName,
    Quantity,
    TrackResult,
    UsageEvent,
)

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

    def _call(self, request: Request, model: type[ModelT]) -> ModelT:
        return parse(self._send(request), model)


class Usage:
    """`client.usage`: current usage, history, tracking."""

    def __init__(self, client: UsageMeter) -> None:
        self._client = client
        self.events = Events(client)

    def current(
        self,
        developer_id: str | None = None,
        *,
        metric: str | None = None,
        period: PeriodName | None = None,
        start_date: dt.date | str | None = None,
        end_date: dt.date | str | None = None,
        group_by: GroupBy = None,
        filters: Filters = None,
    ) -> CurrentUsage:
        """Usage of the billing period, or of `period` ("day", "week", "month"), or of a date range.

        `developer_id` is for service keys (a developer key reads its own usage).
        """
        return self._client._call(
            current_request(
                developer_id=developer_id,
                metric=metric,
                period=period,
                start_date=start_date,
                end_date=end_date,
                group_by=group_by,
                filters=filters,
            ),
            CurrentUsage,
        )

    def history(
        self,
        days: int | None = None,
        *,
        start_date: dt.date | str | None = None,
        end_date: dt.date | str | None = None,
        metric: str | None = None,
        granularity: Granularity = "day",
        developer_id: str | None = None,
        group_by: GroupBy = None,
        filters: Filters = None,
    ) -> History:
        """Usage per day (or month) of the last `days` days (server default 30) or a date range.

        `group_by` ("endpoint" or ["endpoint", "model"]: dimensions the meters declare) adds each
        metric's groups, largest first; `filters` ({"endpoint": "/v1/verify"}) counts only the
        matching events."""
        return self._client._call(
            history_request(
                days=days,
                start_date=start_date,
                end_date=end_date,
                metric=metric,
                granularity=granularity,
                developer_id=developer_id,
                group_by=group_by,
                filters=filters,
            ),
            History,
        )

    def history_csv(
        self,
        days: int | None = None,
        *,
        start_date: dt.date | str | None = None,
        end_date: dt.date | str | None = None,
        metric: str | None = None,
        granularity: Granularity = "day",
        developer_id: str | None = None,
        group_by: GroupBy = None,
        filters: Filters = None,
    ) -> str:
        """The history as CSV text (`Accept: text/csv`): `date,metric,<dimension…>,consumed,events`,
        RFC 4180 (read it with `csv.reader(io.StringIO(text, newline=""))`). A text cell that
        starts with = + - @ tab, CR or ' has a ' put before it, so no spreadsheet runs it."""
        request = history_request(
            days=days,
            start_date=start_date,
            end_date=end_date,
            metric=metric,
            granularity=granularity,
            developer_id=developer_id,
            group_by=group_by,
            filters=filters,
            csv=True,
        )
        return (self._client._send(request)).text

    def track(
        self,
        metric: str,
        quantity: Quantity,
        *,
        idempotency_key: str | None = None,
        timestamp: dt.datetime | str | None = None,
        developer_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> TrackResult:
        """Record one event; counted once per idempotency key (one is generated when not given).

        Raises `LimitExceededError` when a hard limit would be passed (nothing is counted).
        `result.status` is "recorded", or "duplicate" when the key was already counted.
        Without `timestamp` the event is stamped with the time of this call (see UsageEvent).
        """
        event = UsageEvent(metric, quantity, idempotency_key, timestamp, developer_id, metadata)
        return self._client._call(track_request(event), TrackResult)

    def submit(
        self,
        metric: str,
        quantity: Quantity = 1,
        *,
        idempotency_key: str | None = None,
        timestamp: dt.datetime | str | None = None,
        developer_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Future[EventResult]:
        """Queue one event for the background sender (needs `UsageMeter(batching=True)`).

        Its key and timestamp are made now; the future gets its `EventResult` (recorded,
        duplicate, rejected or limit_exceeded), or the error that failed its whole batch after
        the retries. `future.add_done_callback(fn)` gives a callback. Blocks (or raises
        `QueueFullError`) while `max_pending` events are unsent.
        """
        if self._client._batcher is None:
            raise RuntimeError("submit needs UsageMeter(..., batching=True); use track() otherwise")
        event = UsageEvent(metric, quantity, idempotency_key, timestamp, developer_id, metadata)
        return self._client._batcher.submit(event)

    def track_batch(self, events: Sequence[UsageEvent | Mapping[str, Any]]) -> BatchResult:
        """Record 1-100 events in one call; each gets its own result, in order (no exception for
        per-event refusals: see `result.failed`)."""
        return self._client._call(batch_request(events), BatchResult)


class Entitlements:
    """`client.entitlements`: may the developer use a metric now?"""

    def __init__(self, client: UsageMeter) -> None:
        self._client = client

    def get(self, metric: str, *, developer_id: str | None = None) -> Entitlement:
        return self._client._call(entitlement_request(metric, developer_id), Entitlement)

    def check(self, metric: str, *, developer_id: str | None = None) -> bool:
        """True when the plan includes the metric and no hard limit is used up."""
        return self.get(metric, developer_id=developer_id).has_access


class Events:
    """`client.usage.events`: the event log, and corrections (service keys)."""

    def __init__(self, client: UsageMeter) -> None:
        self._client = client

    def page(
        self,
        *,
        developer_id: str | None = None,
        metric: str | None = None,
        status: LogStatus | None = None,
        start: dt.datetime | str | None = None,
        end: dt.datetime | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> EventPage:
        """One page of the log, newest first (`limit` up to 100; `cursor`: the last page's next_cursor)."""
        request = events_request(
            developer_id=developer_id,
            metric=metric,
            status=status,
            start=start,
            end=end,
            limit=limit,
            cursor=cursor,
        )
        return self._client._call(request, EventPage)

    def list(
        self,
        *,
        developer_id: str | None = None,
        metric: str | None = None,
        status: LogStatus | None = None,
        start: dt.datetime | str | None = None,
        end: dt.datetime | str | None = None,
        page_size: int = 100,
    ) -> Iterator[LoggedEvent]:
        """Every event of the log matching the filters, newest first, fetched a page at a time."""
        cursor: str | None = None
        while True:
            page = self.page(
                developer_id=developer_id,
                metric=metric,
                status=status,
                start=start,
                end=end,
                limit=page_size,
                cursor=cursor,
            )
            yield from page.events
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel(self, idempotency_key: str, *, developer_id: str, reason: str = "") -> Correction:
        """Cancel an event: every counter it moved moves back, once (`already_cancelled` after)."""
        request = correction_request("cancel", idempotency_key, developer_id=developer_id, reason=reason)
        return self._client._call(request, Correction)

    def amend(
        self,
        idempotency_key: str,
        *,
        developer_id: str,
        quantity: Quantity | None = None,
        metadata: Mapping[str, Any] | None = None,
        reason: str = "",
    ) -> Correction:
        """Amend an event's quantity and/or metadata (`unchanged` when they are the same);
        `LimitExceededError` when it would take a hard-limited period past its limit."""
        request = correction_request(
            "amend",
            idempotency_key,
            developer_id=developer_id,
            reason=reason,
            quantity=quantity,
            metadata=metadata,
        )
        return self._client._call(request, Correction)
