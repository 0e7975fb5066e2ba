"""The client alone, against `httpx.MockTransport`: retries, backoff, error mapping, exact JSON."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest

from usage_meter_client import (
    APIConnectionError,
    APITimeoutError,
    AsyncUsageMeter,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UsageEvent,
    UsageMeter,
    UsageMeterError,
    ValidationError,
    __version__,
)
from usage_meter_client._core import retry_after
from usage_meter_client._models import _month_or_day

KEY = "um_live_" + "a" * 32
BASE = "https://usage.example.test"
TRACKED = {
    "results": [
        {"index": 0, "status": "recorded", "idempotencyKey": "k", "recordedAt": "2026-11-25T10:00:00.000Z"}
    ],
    "recorded": 1,
    "duplicates": 0,
    "rejected": 0,
    "usage": {
        "metric": "api_calls",
        "consumed": 1,
        "limit": None,
        "remaining": None,
        "periodStart": "2026-11-01T00:00:00Z",
        "periodEnd": "2026-12-01T00:00:00Z",
    },
}

Handler = Callable[[httpx.Request], httpx.Response]


def answer(
    status: int, body: Any = None, headers: dict[str, str] | None = None, text: str | None = None
) -> httpx.Response:
    content = text.encode() if text is not None else json.dumps(body).encode()
    return httpx.Response(
        status, content=content, headers={"content-type": "application/json", **(headers or {})}
    )


def error(status: int, code: str, message: str = "refused", **extra: Any) -> httpx.Response:
    return answer(status, {"error": {"code": code, "message": message}, **extra})


class Script:
    """A mock server answering from a list, one answer (or exception) per request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(item, Exception):
            raise item
        return item


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client_for(script: Script, sleeps: list[float], **options: Any) -> UsageMeter:
    client = UsageMeter(api_key=KEY, base_url=BASE, transport=httpx.MockTransport(script), **options)
    client._sleep = sleeps.append
    return client


@pytest.fixture
def make(sleeps: list[float]) -> Iterator[Callable[..., UsageMeter]]:
    made: list[UsageMeter] = []

    def factory(*answers: httpx.Response | Exception, **options: Any) -> UsageMeter:
        client = client_for(Script(*answers), sleeps, **options)
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


def script_of(client: UsageMeter) -> Script:
    transport = client._http._transport
    assert isinstance(transport, httpx.MockTransport)
    handler = transport.handler
    assert isinstance(handler, Script)
    return handler


# ---- requests -------------------------------------------------------------------------------


def test_headers_and_url(make: Callable[..., UsageMeter]) -> None:
    client = make(answer(200, TRACKED))
    client.usage.track("api_calls", 1)
    request = script_of(client).requests[0]
    assert str(request.url) == f"{BASE}/v1/usage/events"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["user-agent"] == f"usage-meter-client/{__version__}"
    assert request.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("quantity", "text"),
    [
        (Decimal("0.1"), b'"quantity":0.1,'),
        (Decimal("1.50"), b'"quantity":1.50,'),
        (Decimal("1E+3"), b'"quantity":1000,'),
        (Decimal("0.000000001"), b'"quantity":0.000000001,'),
        (0.1, b'"quantity":0.1,'),
        (7, b'"quantity":7,'),
        ("2.25", b'"quantity":2.25,'),
        (Decimal("123456789012.123456789"), b'"quantity":123456789012.123456789,'),
    ],
)
def test_quantities_are_sent_as_exact_json_numbers(
    make: Callable[..., UsageMeter], quantity: Any, text: bytes
) -> None:
    client = make(answer(200, TRACKED))
    client.usage.track("api_calls", quantity)
    assert text in script_of(client).requests[0].content


@pytest.mark.parametrize(
    ("quantity", "kind"),
    [(True, TypeError), (None, TypeError), (Decimal("NaN"), ValueError), (float("inf"), ValueError)],
)
def test_unsendable_quantities_are_refused_before_sending(
    make: Callable[..., UsageMeter], quantity: Any, kind: type[Exception]
) -> None:
    client = make(answer(200, TRACKED))
    with pytest.raises(kind):
        client.usage.track("api_calls", quantity)
    assert script_of(client).requests == []


def test_event_fields_on_the_wire(make: Callable[..., UsageMeter]) -> None:
    client = make(answer(200, TRACKED))
    when = datetime(2026, 11, 25, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    client.usage.track(
        "tokens",
        3,
        idempotency_key="k-1",
        timestamp=when,
        developer_id="dev_x",
        metadata={"cost": Decimal("0.5")},
    )
    body = json.loads(script_of(client).requests[0].content, parse_float=Decimal)
    assert body == {
        "metric": "tokens",
        "quantity": 3,
        "idempotencyKey": "k-1",
        "timestamp": "2026-11-25T10:00:00+02:00",
        "developerId": "dev_x",
        "metadata": {"cost": Decimal("0.5")},
    }


def test_naive_timestamps_are_refused(make: Callable[..., UsageMeter]) -> None:
    client = make(answer(200, TRACKED))
    with pytest.raises(ValueError, match="timezone-aware"):
        client.usage.track("api_calls", 1, timestamp=datetime(2026, 11, 25, 10, 0))


def test_query_parameters(make: Callable[..., UsageMeter]) -> None:
    history = {
        "developerId": "dev_x",
        "granularity": "month",
        "entries": [{"date": "2026-11", "metrics": {"a": 1.5}, "totalRequests": 2}],
    }
    client = make(answer(200, history))
    result = client.usage.history(
        start_date=date(2026, 10, 1),
        end_date=datetime(2026, 11, 30, 23, tzinfo=UTC),
        granularity="month",
        developer_id="dev_x",
    )
    params = script_of(client).requests[0].url.params
    assert dict(params) == {
        "startDate": "2026-10-01",
        "endDate": "2026-11-30",
        "granularity": "month",
        "developerId": "dev_x",
    }
    assert result.entries[0].date == date(2026, 11, 1)
    assert result.entries[0].metrics["a"] == Decimal("1.5")


def test_grouped_reads_send_group_by_and_one_filter_per_dimension(make: Callable[..., UsageMeter]) -> None:
    current = """{"developerId": "dev_x", "plan": null,
      "period": {"key": "2026-11", "start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"},
      "metrics": {"calls": {"consumed": 3, "events": 3, "aggregation": "count",
                  "groups": [{"dimensions": {"endpoint": "/v1/a"}, "consumed": 2, "events": 2},
                             {"dimensions": {"endpoint": "/v1/b"}, "consumed": 1.5, "events": 1}]}},
      "totalRequests": 3, "resetsInDays": 6}"""
    client = make(answer(200, text=current))
    usage = client.usage.current(
        metric="calls", group_by=["endpoint", "model"], filters={"model": "x,y", "region": "eu"}
    )
    sent = script_of(client).requests[0].url.params
    assert sent.get_list("groupBy") == ["endpoint,model"]
    assert sent.get_list("filter") == ["model:x,y", "region:eu"]
    groups = usage.metrics["calls"].groups or []
    assert [(g.dimensions, g.consumed, g.events) for g in groups] == [
        ({"endpoint": "/v1/a"}, Decimal(2), 2),
        ({"endpoint": "/v1/b"}, Decimal("1.5"), 1),
    ]


def test_history_csv_asks_for_csv_and_returns_the_text(make: Callable[..., UsageMeter]) -> None:
    body = 'date,metric,endpoint,consumed,events\r\n2026-11-25,calls,"a,b",2,2\r\n'
    client = make(
        httpx.Response(200, content=body.encode(), headers={"content-type": "text/csv; charset=utf-8"})
    )
    assert client.usage.history_csv(days=1, group_by="endpoint") == body
    request = script_of(client).requests[0]
    assert request.headers["accept"] == "text/csv"
    assert dict(request.url.params) == {"days": "1", "granularity": "day", "groupBy": "endpoint"}


def test_entitlement_path_is_quoted(make: Callable[..., UsageMeter]) -> None:
    client = make(error(404, "not_found"))
    with pytest.raises(NotFoundError):
        client.entitlements.check("a/b", developer_id="dev_x")
    assert script_of(client).requests[0].url.raw_path == b"/v1/entitlements/a%2Fb?developerId=dev_x"


def test_batch_generates_a_key_per_event(make: Callable[..., UsageMeter]) -> None:
    batch = {
        "results": [
            {"index": 0, "status": "recorded"},
            {"index": 1, "status": "rejected", "error": {"code": "validation_error", "message": "x"}},
        ],
        "recorded": 1,
        "duplicates": 0,
        "rejected": 1,
    }
    client = make(answer(200, batch))
    result = client.usage.track_batch(
        [UsageEvent("a", 1), {"metric": "b", "quantity": Decimal("2.5"), "idempotency_key": "mine"}]
    )
    events = json.loads(script_of(client).requests[0].content)["events"]
    assert events[0]["idempotencyKey"] != events[1]["idempotencyKey"] == "mine"
    assert [r.index for r in result.failed] == [1]
    with pytest.raises(TypeError):
        client.usage.track_batch({"metric": "a", "quantity": 1})  # type: ignore[arg-type]


# ---- answers -------------------------------------------------------------------------------


def test_answers_keep_exact_decimals(make: Callable[..., UsageMeter]) -> None:
    text = """{"developerId": "dev_x", "plan": null,
      "period": {"key": "2026-11", "start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"},
      "metrics": {"a": {"consumed": 0.30000000000000004, "limit": 1e12,
                        "remaining": 999999999999.699999999, "percentageUsed": 0.01}},
      "totalRequests": 3, "resetsInDays": 6, "somethingNew": true}"""
    client = make(answer(200, text=text))
    usage = client.usage.current()
    assert usage.metrics["a"].consumed == Decimal("0.30000000000000004")
    assert usage.metrics["a"].limit == Decimal("1e12")
    assert usage.metrics["a"].remaining == Decimal("999999999999.699999999")
    assert usage.period.end == datetime(2026, 12, 1, tzinfo=UTC)
    assert usage.rate_limit is None


def test_metric_entries_carry_their_aggregation_events_and_average(make: Callable[..., UsageMeter]) -> None:
    text = """{"developerId": "dev_x", "plan": "pro",
      "period": {"key": "2026-11", "start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"},
      "metrics": {"tokens": {"consumed": 2.75, "limit": null, "remaining": null, "percentageUsed": null,
                             "aggregation": "sum", "events": 3, "average": 0.916666667},
                  "agents": {"consumed": 37, "limit": 500, "remaining": 463, "percentageUsed": 7.4,
                             "aggregation": "level", "events": 41, "average": null}},
      "totalRequests": 44, "resetsInDays": 6}"""
    usage = make(answer(200, text=text)).usage.current()
    tokens, agents = usage.metrics["tokens"], usage.metrics["agents"]
    assert (tokens.aggregation, tokens.events, tokens.average) == ("sum", 3, Decimal("0.916666667"))
    assert (agents.aggregation, agents.events, agents.average, agents.consumed) == ("level", 41, None, 37)


def test_unreadable_answer_is_invalid_response(make: Callable[..., UsageMeter]) -> None:
    client = make(answer(200, text="<html>"))
    with pytest.raises(UsageMeterError) as caught:
        client.usage.current()
    assert caught.value.code == "invalid_response"
    client = make(answer(200, {"unexpected": 1}))
    with pytest.raises(UsageMeterError, match="unexpected answer"):
        client.entitlements.get("a")


@pytest.mark.parametrize(
    ("response", "kind", "code"),
    [
        (error(400, "invalid_json"), ValidationError, "invalid_json"),
        (error(422, "validation_error"), ValidationError, "validation_error"),
        (
            answer(415, {"error": {"code": "unsupported_media_type", "message": "m"}}),
            BadRequestError,
            "unsupported_media_type",
        ),
        (answer(401, {"message": "Unauthorized"}), AuthenticationError, "unauthorized"),
        (error(403, "forbidden"), PermissionDeniedError, "forbidden"),
        (error(404, "developer_not_found"), NotFoundError, "developer_not_found"),
        (error(409, "idempotency_key_reused"), ConflictError, "idempotency_key_reused"),
        (error(429, "limit_exceeded"), LimitExceededError, "limit_exceeded"),
        (answer(429, {"message": "Too Many Requests"}), RateLimitError, "too_many_requests"),
        (answer(500, text="boom"), InternalServerError, "server_error"),
        (error(503, "temporarily_unavailable"), ServiceUnavailableError, "temporarily_unavailable"),
    ],
)
def test_error_mapping(
    make: Callable[..., UsageMeter], response: httpx.Response, kind: type[UsageMeterError], code: str
) -> None:
    client = make(response, max_retries=0)
    with pytest.raises(kind) as caught:
        client.usage.current()
    assert type(caught.value) is kind
    assert (caught.value.status, caught.value.code) == (response.status_code, code)
    assert caught.value.message
    assert str(response.status_code) in str(caught.value)


# ---- retries -------------------------------------------------------------------------------


def test_503_is_retried_honouring_retry_after_with_the_same_body(
    make: Callable[..., UsageMeter], sleeps: list[float]
) -> None:
    busy = error(503, "temporarily_unavailable")
    busy.headers["Retry-After"] = "2"
    client = make(busy, busy, answer(200, TRACKED))
    result = client.usage.track("api_calls", 1)
    assert result.status == "recorded"
    bodies = [r.content for r in script_of(client).requests]
    assert len(bodies) == 3
    assert len(set(bodies)) == 1  # one generated idempotency key for every attempt
    assert sleeps == [2.0, 2.0]


def test_retry_after_is_capped(make: Callable[..., UsageMeter], sleeps: list[float]) -> None:
    busy = error(503, "temporarily_unavailable")
    busy.headers["Retry-After"] = "3600"
    client = make(busy, answer(200, TRACKED))
    client.usage.track("api_calls", 1)
    assert sleeps == [60.0]


def test_5xx_and_network_errors_back_off_with_full_jitter(
    make: Callable[..., UsageMeter], sleeps: list[float]
) -> None:
    client = make(
        httpx.ConnectError("refused"),
        answer(502, {"message": "Bad Gateway"}),
        httpx.ReadTimeout("slow"),
        answer(500, {"message": "Internal Server Error"}),
        max_retries=3,
        backoff=1.0,
        max_backoff=3.0,
    )
    with pytest.raises(InternalServerError):
        client.usage.current()
    assert len(script_of(client).requests) == 4
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps):
        assert 0 <= delay <= min(3.0, 1.0 * 2**attempt)


def test_gateway_throttling_is_retried_but_a_hard_limit_is_not(
    make: Callable[..., UsageMeter], sleeps: list[float]
) -> None:
    client = make(answer(429, {"message": "Too Many Requests"}), answer(200, TRACKED))
    assert client.usage.track("api_calls", 1).status == "recorded"
    assert len(sleeps) == 1
    usage = TRACKED["usage"]
    limited = error(429, "limit_exceeded", usage={**usage, "consumed": 3, "limit": 3, "remaining": 0})  # type: ignore[dict-item]
    limited.headers["Retry-After"] = "86400"
    client = make(limited, answer(200, TRACKED))
    with pytest.raises(LimitExceededError) as caught:
        client.usage.track("api_calls", 1)
    assert len(script_of(client).requests) == 1
    assert caught.value.retry_after == 86400
    assert type(caught.value.retry_after) is int  # printed as "86400 s", never "86400.0 s"
    assert caught.value.usage is not None
    assert (caught.value.usage.limit, caught.value.usage.remaining) == (Decimal(3), Decimal(0))


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2591985", 2591985), ("2.2", 3), ("0", 0), ("-5", 0), ("soon", None), ("nan", None), ("inf", None)],
)
def test_retry_after_is_whole_seconds(header: str, seconds: int | None) -> None:
    response = httpx.Response(429, headers={"Retry-After": header})
    assert retry_after(response) == seconds
    assert seconds is None or type(retry_after(response)) is int


def test_timeouts_become_timeout_errors(make: Callable[..., UsageMeter]) -> None:
    client = make(httpx.ReadTimeout("slow"), max_retries=2)
    with pytest.raises(APITimeoutError) as caught:
        client.usage.current()
    assert len(script_of(client).requests) == 3
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


def test_requests_that_cannot_be_sent_are_not_retried(make: Callable[..., UsageMeter]) -> None:
    client = make(httpx.UnsupportedProtocol("ftp"))
    with pytest.raises(APIConnectionError):
        client.usage.current()
    assert len(script_of(client).requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_client_errors_are_not_retried(make: Callable[..., UsageMeter], status: int) -> None:
    client = make(error(status, "x"), answer(200, TRACKED))
    with pytest.raises(UsageMeterError):
        client.usage.track("api_calls", 1)
    assert len(script_of(client).requests) == 1


# ---- configuration ---------------------------------------------------------------------------


def test_key_and_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USAGE_METER_API_KEY", KEY)
    monkeypatch.setenv("USAGE_METER_BASE_URL", BASE + "/")
    with UsageMeter() as client:
        assert client.base_url == BASE
        assert client.max_retries == 3
    monkeypatch.delenv("USAGE_METER_API_KEY")
    with pytest.raises(ValueError, match="API key"):
        UsageMeter()


def test_a_given_http_client_is_not_closed() -> None:
    http = httpx.Client(transport=httpx.MockTransport(Script(answer(200, TRACKED))))
    with UsageMeter(api_key=KEY, base_url=BASE, http_client=http) as client:
        client.usage.track("api_calls", 1)
    assert not http.is_closed
    http.close()


# ---- async ---------------------------------------------------------------------------------


def test_async_retries_with_the_same_body() -> None:
    script = Script(
        httpx.ConnectError("refused"), error(503, "temporarily_unavailable"), answer(200, TRACKED)
    )
    sleeps: list[float] = []

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)

    async def scenario() -> None:
        async with AsyncUsageMeter(
            api_key=KEY, base_url=BASE, transport=httpx.MockTransport(script)
        ) as client:
            client._sleep = fake_sleep
            result = await client.usage.track("api_calls", Decimal("0.1"))
            assert result.usage is not None
            assert result.usage.consumed == 1

    asyncio.run(scenario())
    assert len(sleeps) == 2
    assert len({r.content for r in script.requests}) == 1
    assert b'"quantity":0.1,' in script.requests[0].content


def test_async_errors_are_typed() -> None:
    async def scenario() -> None:
        transport = httpx.MockTransport(Script(error(429, "limit_exceeded")))
        async with AsyncUsageMeter(api_key=KEY, base_url=BASE, transport=transport) as client:
            with pytest.raises(LimitExceededError):
                await client.entitlements.check("a")

    asyncio.run(scenario())


# ---- the event's time ------------------------------------------------------------------------

T0 = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)
BATCH_OF_TWO = {
    "results": [{"index": 0, "status": "recorded"}, {"index": 1, "status": "recorded"}],
    "recorded": 2,
    "duplicates": 0,
    "rejected": 0,
}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """The client's clock: the first element is "now" (move it by assigning to clock[0])."""
    moments = [T0]
    monkeypatch.setattr("usage_meter_client._models.now", lambda: moments[0], raising=False)
    return moments


def sent_times(script: Script) -> list[str]:
    times = []
    for request in script.requests:
        body = json.loads(request.content)
        times.extend(event["timestamp"] for event in body.get("events", [body]))
    return times


def test_an_event_without_a_timestamp_is_stamped_when_created(clock: list[datetime]) -> None:
    event = UsageEvent("api_calls", 1, idempotency_key="k-1")
    clock[0] = T0 + timedelta(days=36)  # sent (again) much later
    assert event.timestamp == T0
    assert UsageEvent("api_calls", 1).timestamp == T0 + timedelta(days=36)
    assert UsageEvent("api_calls", 1, timestamp="2026-11-01T00:00:00Z").timestamp == "2026-11-01T00:00:00Z"


def test_track_stamps_the_time_of_the_call_and_retries_keep_it(
    make: Callable[..., UsageMeter], clock: list[datetime], sleeps: list[float]
) -> None:
    client = make(error(503, "temporarily_unavailable"), answer(200, TRACKED))
    client.usage.track("api_calls", 1)
    assert sent_times(script_of(client)) == ["2026-11-25T10:00:00.123456+00:00"] * 2
    assert len(sleeps) == 1


def test_a_batch_stamps_its_events_created_then_and_its_dicts_now(
    make: Callable[..., UsageMeter], clock: list[datetime]
) -> None:
    early = UsageEvent("a", 1, idempotency_key="early")
    clock[0] = T0 + timedelta(minutes=3)
    client = make(answer(200, BATCH_OF_TWO))
    client.usage.track_batch([early, {"metric": "b", "quantity": 1}])
    assert sent_times(script_of(client)) == [
        "2026-11-25T10:00:00.123456+00:00",
        "2026-11-25T10:03:00.123456+00:00",
    ]


def test_a_resent_event_carries_its_first_time(
    make: Callable[..., UsageMeter], clock: list[datetime]
) -> None:
    """What makes a late resend refused (too old) instead of counted again by the service."""
    event = UsageEvent("api_calls", 1, idempotency_key="invoice-42")
    client = make(answer(200, BATCH_OF_TWO))
    client.usage.track_batch([event])
    clock[0] = T0 + timedelta(days=36)
    client.usage.track_batch([event])
    assert sent_times(script_of(client)) == ["2026-11-25T10:00:00.123456+00:00"] * 2


def test_async_track_and_batch_stamp_the_event_time(clock: list[datetime]) -> None:
    script = Script(answer(200, TRACKED), answer(200, BATCH_OF_TWO))
    early = UsageEvent("a", 1)

    async def scenario() -> None:
        clock[0] = T0 + timedelta(seconds=30)
        async with AsyncUsageMeter(
            api_key=KEY, base_url=BASE, transport=httpx.MockTransport(script)
        ) as client:
            await client.usage.track("api_calls", 1)
            await client.usage.track_batch([early, {"metric": "b", "quantity": 1}])

    asyncio.run(scenario())
    assert sent_times(script) == [
        "2026-11-25T10:00:30.123456+00:00",
        "2026-11-25T10:00:00.123456+00:00",
        "2026-11-25T10:00:30.123456+00:00",
    ]


def test_only_a_whole_month_reads_as_a_month() -> None:
    assert _month_or_day("2026-11") == "2026-11-01"
    for other in ("2026-11\n", "2026-11-05", "x2026-11"):
        assert _month_or_day(other) == other


# ---- the event log and corrections -----------------------------------------------------------


def logged(key: str, **fields: Any) -> dict[str, Any]:
    return {
        "idempotencyKey": key,
        "metric": "api_calls",
        "quantity": 2.5,
        "timestamp": "2026-11-25T10:00:00.000Z",
        "recordedAt": "2026-11-25T10:00:01.000Z",
        "status": "recorded",
        "metadata": None,
        "revision": 0,
        "revisions": [],
        **fields,
    }


def test_events_list_follows_the_cursor_through_every_page(make: Callable[..., UsageMeter]) -> None:
    client = make(
        answer(200, {"events": [logged("a"), logged("b")], "nextCursor": "c1"}),
        answer(200, {"events": [logged("c")], "nextCursor": None}),
    )
    start = datetime(2026, 11, 20, tzinfo=UTC)
    found = list(client.usage.events.list(developer_id="dev_x", metric="api_calls", start=start, page_size=2))
    assert [e.idempotency_key for e in found] == ["a", "b", "c"]
    assert found[0].quantity == Decimal("2.5")
    first, second = (r.url.params for r in script_of(client).requests)
    assert dict(first) == {
        "developerId": "dev_x",
        "metric": "api_calls",
        "limit": "2",
        "from": "2026-11-20T00:00:00+00:00",
    }
    assert second["cursor"] == "c1"


def test_cancel_and_amend_send_one_body_and_read_the_correction(make: Callable[..., UsageMeter]) -> None:
    revision = {
        "revision": 1,
        "action": "amend",
        "at": "2026-11-25T11:00:00.000Z",
        "reason": "typo",
        "quantity": 2.5,
    }
    client = make(
        error(503, "temporarily_unavailable"),
        answer(
            200,
            {
                "status": "amended",
                "revision": 1,
                "event": logged("k", quantity=3, status="amended", revision=1, revisions=[revision]),
            },
        ),
    )
    done = client.usage.events.amend("k", developer_id="dev_x", quantity=Decimal("3"), reason="typo")
    assert (done.status, done.revision, done.event.quantity) == ("amended", 1, Decimal(3))
    assert done.event.revisions[0].quantity == Decimal("2.5")
    bodies = [r.content for r in script_of(client).requests]
    assert bodies[0] == bodies[1]  # the retry is the same correction: it applies once
    assert json.loads(bodies[0]) == {
        "developerId": "dev_x",
        "idempotencyKey": "k",
        "reason": "typo",
        "quantity": 3,
    }
    assert script_of(client).requests[0].url.path == "/v1/usage/events/amend"
    cancel = make(
        answer(
            200,
            {
                "status": "already_cancelled",
                "revision": 1,
                "event": logged("k", status="cancelled", revision=1),
            },
        )
    )
    assert cancel.usage.events.cancel("k", developer_id="dev_x").status == "already_cancelled"


def test_async_events_list_iterates_pages() -> None:
    pages = iter(
        [
            answer(200, {"events": [logged("a")], "nextCursor": "c1"}),
            answer(200, {"events": [logged("b")], "nextCursor": None}),
        ]
    )

    async def main() -> list[str]:
        transport = httpx.MockTransport(lambda _: next(pages))
        async with AsyncUsageMeter(api_key=KEY, base_url=BASE, transport=transport) as client:
            return [e.idempotency_key async for e in client.usage.events.list(developer_id="dev_x")]

    assert asyncio.run(main()) == ["a", "b"]
