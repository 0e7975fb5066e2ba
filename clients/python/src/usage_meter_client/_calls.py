"""Every call of the API, once: its arguments, the request it sends and how its answer is read.

The sync and the async client expose these as their methods (same names, arguments and
docstrings); all they add is the sending, which is where the two differ.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar
from urllib.parse import quote

import httpx

from . import _json
from ._core import Filters, GroupBy, ModelT, Request, event_wire, grouping, params, parse
from ._models import (
    BatchResult,
    Correction,
    CurrentUsage,
    Entitlement,
    EventPage,
    Granularity,
    History,
    LogStatus,
    PeriodName,
    Quantity,
    TrackResult,
    UsageEvent,
    timestamp_text,
    to_decimal,
)

T = TypeVar("T")
P = ParamSpec("P")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API call: the request, built once (every retry sends exactly these bytes, with the
    same idempotency keys), and how its 2xx answer becomes the method's result."""

    request: Request
    read: Callable[[httpx.Response], T]


def answer(request: Request, model: type[ModelT]) -> Call[ModelT]:
    """A call whose answer is the JSON of `model`."""
    return Call(request, lambda response: parse(response, model))


def next_page(call: Call[EventPage], page: EventPage) -> Call[EventPage] | None:
    """The call for the page after `page` (same filters, its cursor), or None after the last."""
    if page.next_cursor is None:
        return None
    params = {**(call.request.params or {}), "cursor": page.next_cursor}
    return dataclasses.replace(call, request=dataclasses.replace(call.request, params=params))


C = TypeVar("C")


class Resource(Generic[C]):
    """A group of a client's methods (`client.usage`), with the client that sends their calls."""

    def __init__(self, client: C) -> None:
        self._client = client

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Methods made by `method_like` are named as this class's own (for help())."""
        super().__init_subclass__(**kwargs)
        for name, value in vars(cls).items():
            if inspect.isfunction(value):
                value.__qualname__ = f"{cls.__qualname__}.{name}"


def method_like(method: F, build: Callable[..., Any]) -> F:
    """`method` (a client's method sending what `build` makes) named, documented and signed as
    `build`, with `self` first (its result is the call's answer read, so the signature states
    none): what help() shows."""
    signature = inspect.signature(build)
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__name__ = build.__name__
    method.__doc__ = build.__doc__
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self, *signature.parameters.values()], return_annotation=inspect.Signature.empty
    )
    return method


def _csv(history: Callable[P, Call[History]]) -> Callable[P, Call[str]]:
    """The history call asking for CSV instead, and answering the text."""

    def history_csv(*args: P.args, **kwargs: P.kwargs) -> Call[str]:
        """The history as CSV text (`Accept: text/csv`): `date,metric,<dimension…>,consumed,events`,
        RFC 4180 (read it with `csv.reader(io.StringIO(text, newline=""))`). A text cell that
        starts with = + - @ tab, CR or ' has a ' put before it, so no spreadsheet runs it."""
        request = dataclasses.replace(history(*args, **kwargs).request, accept="text/csv")
        return Call(request, lambda response: response.text)

    history_csv.__signature__ = inspect.signature(history)  # type: ignore[attr-defined]
    return history_csv


class UsageCalls:
    """`client.usage`: current usage, history, tracking."""

    @staticmethod
    def current(
        developer_id: str | None = None,
        *,
        metric: str | None = None,
        period: PeriodName | None = None,
        start_date: dt.date | str | None = None,
        end_date: dt.date | str | None = None,
        group_by: GroupBy = None,
        filters: Filters = None,
    ) -> Call[CurrentUsage]:
        """Usage of the billing period, or of `period` ("day", "week", "month"), or of a date range.

        `developer_id` is for service keys (a developer key reads its own usage).
        """
        request = Request(
            "GET",
            "/v1/usage",
            {
                **params(
                    developerId=developer_id,
                    metric=metric,
                    period=period,
                    startDate=start_date,
                    endDate=end_date,
                ),
                **grouping(group_by, filters),
            },
        )
        return answer(request, CurrentUsage)

    @staticmethod
    def history(
        days: int | None = None,
        *,
        start_date: dt.date | str | None = None,
        end_date: dt.date | str | None = None,
        metric: str | None = None,
        granularity: Granularity = "day",
        developer_id: str | None = None,
        group_by: GroupBy = None,
        filters: Filters = None,
    ) -> Call[History]:
        """Usage per day (or month) of the last `days` days (server default 30) or a date range.

        `group_by` ("endpoint" or ["endpoint", "model"]: dimensions the meters declare) adds each
        metric's groups, largest first; `filters` ({"endpoint": "/v1/verify"}) counts only the
        matching events."""
        request = Request(
            "GET",
            "/v1/usage/history",
            {
                **params(
                    days=days,
                    startDate=start_date,
                    endDate=end_date,
                    metric=metric,
                    granularity=granularity,
                    developerId=developer_id,
                ),
                **grouping(group_by, filters),
            },
        )
        return answer(request, History)

    history_csv = staticmethod(_csv(history))

    @staticmethod
    def track(
        metric: str,
        quantity: Quantity,
        *,
        idempotency_key: str | None = None,
        timestamp: dt.datetime | str | None = None,
        developer_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Call[TrackResult]:
        """Record one event; counted once per idempotency key (one is generated when not given).

        Raises `LimitExceededError` when a hard limit would be passed (nothing is counted).
        `result.status` is "recorded", or "duplicate" when the key was already counted.
        Without `timestamp` the event is stamped with the time of this call (see UsageEvent).
        """
        event = UsageEvent(metric, quantity, idempotency_key, timestamp, developer_id, metadata)
        return answer(Request("POST", "/v1/usage/events", body=_json.dumps(event_wire(event))), TrackResult)

    @staticmethod
    def submit(
        metric: str,
        quantity: Quantity = 1,
        *,
        idempotency_key: str | None = None,
        timestamp: dt.datetime | str | None = None,
        developer_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> UsageEvent:
        """Queue one event for the background sender (needs the client made with `batching=True`;
        with the async client, awaiting `submit` waits only for room in the queue).

        Its key and timestamp are made now; the future gets its `EventResult` (recorded,
        duplicate, rejected or limit_exceeded), or the error that failed its whole batch after
        the retries. `future.add_done_callback(fn)` gives a callback. Blocks (or raises
        `QueueFullError`) while `max_pending` events are unsent.
        """
        return UsageEvent(metric, quantity, idempotency_key, timestamp, developer_id, metadata)

    @staticmethod
    def track_batch(events: Sequence[UsageEvent | Mapping[str, Any]]) -> Call[BatchResult]:
        """Record 1-100 events in one call; each gets its own result, in order (no exception for
        per-event refusals: see `result.failed`)."""
        if isinstance(events, str | bytes | Mapping):
            raise TypeError("events is a sequence of UsageEvent (or of dicts with the same fields)")
        wire = [event_wire(e if isinstance(e, UsageEvent) else UsageEvent(**e)) for e in events]
        return answer(Request("POST", "/v1/usage/events", body=_json.dumps({"events": wire})), BatchResult)


class EntitlementCalls:
    """`client.entitlements`: may the developer use a metric now?"""

    @staticmethod
    def get(metric: str, *, developer_id: str | None = None) -> Call[Entitlement]:
        path = f"/v1/entitlements/{quote(metric, safe='')}"
        return answer(Request("GET", path, params(developerId=developer_id)), Entitlement)

    @staticmethod
    def check(metric: str, *, developer_id: str | None = None) -> Call[bool]:
        """True when the plan includes the metric and no hard limit is used up."""
        request = EntitlementCalls.get(metric, developer_id=developer_id).request
        return Call(request, lambda response: parse(response, Entitlement).has_access)


class EventCalls:
    """`client.usage.events`: the event log, and corrections (service keys)."""

    @staticmethod
    def page(
        *,
        developer_id: str | None = None,
        metric: str | None = None,
        status: LogStatus | None = None,
        start: dt.datetime | str | None = None,
        end: dt.datetime | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Call[EventPage]:
        """One page of the log, newest first (`limit` up to 100; `cursor`: the last page's next_cursor)."""
        query = params(developerId=developer_id, metric=metric, status=status, limit=limit, cursor=cursor)
        for name, moment in (("from", start), ("to", end)):  # RFC 3339 instants
            if moment is not None:
                query[name] = moment if isinstance(moment, str) else timestamp_text(moment)
        return answer(Request("GET", "/v1/usage/events", query), EventPage)

    @staticmethod
    def list(
        *,
        developer_id: str | None = None,
        metric: str | None = None,
        status: LogStatus | None = None,
        start: dt.datetime | str | None = None,
        end: dt.datetime | str | None = None,
        page_size: int = 100,
    ) -> Call[EventPage]:
        """Every event of the log matching the filters, newest first, fetched a page at a time."""
        return EventCalls.page(
            developer_id=developer_id, metric=metric, status=status, start=start, end=end, limit=page_size
        )

    @staticmethod
    def cancel(idempotency_key: str, *, developer_id: str, reason: str = "") -> Call[Correction]:
        """Cancel an event: every counter it moved moves back, once (`already_cancelled` after)."""
        return _correction(
            "cancel", {"developerId": developer_id, "idempotencyKey": idempotency_key, "reason": reason}
        )

    @staticmethod
    def amend(
        idempotency_key: str,
        *,
        developer_id: str,
        quantity: Quantity | None = None,
        metadata: Mapping[str, Any] | None = None,
        reason: str = "",
    ) -> Call[Correction]:
        """Amend an event's quantity and/or metadata (`unchanged` when they are the same);
        `LimitExceededError` when it would take a hard-limited period past its limit."""
        body: dict[str, Any] = {
            "developerId": developer_id,
            "idempotencyKey": idempotency_key,
            "reason": reason,
        }
        if quantity is not None:
            body["quantity"] = to_decimal(quantity)
        if metadata is not None:
            body["metadata"] = dict(metadata)
        return _correction("amend", body)


def _correction(action: str, body: dict[str, Any]) -> Call[Correction]:
    """A cancel or an amend: a retry sends the same body, and a correction applies once."""
    return answer(Request("POST", f"/v1/usage/events/{action}", body=_json.dumps(body)), Correction)
