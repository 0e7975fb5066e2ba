"""The Python SDK (clients/python) against the local stack over real HTTP.

Every method, sync and async; every error type from real server answers (a developer key
reads, only the service key tracks); and the retry that matters: an answer lost after the server applied the event is retried with the same
(generated) idempotency key, and the event is counted once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
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
    BatchResult,
    ConflictError,
    CurrentUsage,
    Entitlement,
    History,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    TrackResult,
    UsageEvent,
    UsageMeter,
    UsageMeterError,
    ValidationError,
)
from usage_meter_local.dynamodb_local import free_port

from e2e.conftest import admin

pytestmark = pytest.mark.e2e

DEMO = "dev_demo"
BACKOFF, MAX_BACKOFF = 0.01, 0.05  # retries without slowing the suite


def unique(prefix: str = "sdk") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def today() -> date:
    return datetime.now(UTC).date()


@pytest.fixture
def dev(local_stack: dict[str, Any]) -> Iterator[UsageMeter]:
    with UsageMeter(api_key=local_stack["developerKey"], base_url=local_stack["base"]) as client:
        yield client


@pytest.fixture
def service(local_stack: dict[str, Any]) -> Iterator[UsageMeter]:
    """The provider's backend: the only kind of key that tracks."""
    with UsageMeter(api_key=local_stack["serviceKey"], base_url=local_stack["base"]) as client:
        yield client


# ---- a developer on a tiny hard-limit plan, made with the admin CLI ----------------------


@pytest.fixture(scope="module")
def tiny(local_stack: dict[str, Any]) -> dict[str, str]:
    """A fresh developer on a plan allowing 3 api_calls (hard), with a developer key (to read)
    and the stack's service key (to track for it)."""
    plan = f"sdk-tiny-{uuid.uuid4().hex[:8]}"
    admin(local_stack, "plans", "put", plan, "--metric", "api_calls=3:hard")
    developer = admin(local_stack, "developers", "create", "--name", "SDK limits", "--plan", plan)
    key = admin(local_stack, "keys", "create", developer["developerId"])["key"]
    return {
        "developer_id": developer["developerId"],
        "key": key,
        "service_key": local_stack["serviceKey"],
        "base": local_stack["base"],
    }


# ---- transports that watch or break the real HTTP exchange ---------------------------------


class Recording(httpx.BaseTransport):
    """Forwards to the real server and keeps every request."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class DropFirstAnswer(Recording):
    """The first POST reaches the server and is applied; its answer is lost (a read timeout)."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped: list[bytes] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST" and not self.dropped:
            self.dropped.append(response.read())
            response.close()
            raise httpx.ReadTimeout("answer lost after the server applied the event", request=request)
        return response


class AsyncDropFirstAnswer(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []
        self.dropped: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and not self.dropped:
            self.dropped.append(await response.aread())
            await response.aclose()
            raise httpx.ReadTimeout("answer lost after the server applied the event", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _posted(requests: list[httpx.Request]) -> list[dict[str, Any]]:
    return [json.loads(r.content, parse_float=Decimal) for r in requests if r.method == "POST"]


# ---- every method -----------------------------------------------------------------------------


def test_current_usage_is_typed(dev: UsageMeter) -> None:
    usage = dev.usage.current()
    assert isinstance(usage, CurrentUsage)
    assert (usage.developer_id, usage.plan) == (DEMO, "pro")
    assert usage.period.start.tzinfo is not None
    assert usage.period.start <= datetime.now(UTC) < usage.period.end
    assert usage.period.key == usage.period.start.strftime("%Y-%m")
    api_calls = usage.metrics["api_calls"]
    assert api_calls.limit == Decimal(100000)
    assert not api_calls.unlimited
    assert isinstance(api_calls.consumed, Decimal)
    assert isinstance(usage.total_requests, int)
    assert usage.resets_in_days >= 0
    assert usage.rate_limit is not None
    assert usage.rate_limit.requests_per_minute == 1000


def test_current_usage_filters_periods_and_dates(service: UsageMeter) -> None:
    week = service.usage.current(DEMO, metric="api_calls", period="week")
    assert list(week.metrics) == ["api_calls"]
    assert week.period.start.weekday() == 0
    day = service.usage.current(developer_id=DEMO, period="day")
    assert day.period.start.date() == today()
    ranged = service.usage.current(DEMO, start_date=today() - timedelta(days=2), end_date=today())
    assert ranged.period.start.date() == today() - timedelta(days=2)
    assert ranged.period.end.date() == today() + timedelta(days=1)  # end is exclusive


def test_track_counts_exact_decimals_and_reads_back(dev: UsageMeter, service: UsageMeter) -> None:
    metric = unique()
    first = service.usage.track(metric=metric, quantity=Decimal("0.1"), developer_id=DEMO)
    second = service.usage.track(metric=metric, quantity=0.2, developer_id=DEMO)  # sent as its repr, 0.2
    assert isinstance(second, TrackResult)
    assert (first.status, second.status) == ("recorded", "recorded")
    assert second.usage is not None
    assert second.usage.consumed == Decimal("0.3")
    assert second.usage.limit is None  # not in the plan: counted without limit
    # the client generated a different key for each call
    assert first.idempotency_key
    assert second.idempotency_key
    assert first.idempotency_key != second.idempotency_key
    uuid.UUID(first.idempotency_key)
    assert first.recorded_at is not None
    assert first.recorded_at.tzinfo is not None

    current = dev.usage.current(metric=metric)
    assert current.metrics[metric].consumed == Decimal("0.3")
    assert current.metrics[metric].percentage_used is None
    history = dev.usage.history(days=1, metric=metric)
    assert isinstance(history, History)
    assert [e.date for e in history.entries] == [today()]
    assert history.entries[0].metrics[metric] == Decimal("0.3")
    assert history.entries[0].total_requests >= 2
    assert history.total(metric) == Decimal("0.3")


def test_track_with_a_key_is_counted_once(dev: UsageMeter, service: UsageMeter) -> None:
    """Sent again with its key and its time: a duplicate. Each call stamps its own time when
    none is given, so a second call with only the key is another payload (409): counted once
    either way."""
    metric, key, when = unique(), unique("key"), datetime.now(UTC)
    first = service.usage.track(
        metric, Decimal("2.50"), idempotency_key=key, timestamp=when, developer_id=DEMO
    )
    again = service.usage.track(
        metric, Decimal("2.5"), idempotency_key=key, timestamp=when, developer_id=DEMO
    )
    assert (first.status, first.duplicate) == ("recorded", False)
    assert (again.status, again.duplicate) == ("duplicate", True)
    assert again.recorded_at == first.recorded_at
    assert again.idempotency_key == key
    with pytest.raises(ConflictError):
        service.usage.track(
            metric, Decimal("2.5"), idempotency_key=key, developer_id=DEMO
        )  # stamped now: another time
    assert dev.usage.current(metric=metric).metrics[metric].consumed == Decimal("2.5")


def test_service_key_tracks_for_a_developer_with_timestamp_and_metadata(service: UsageMeter) -> None:
    metric = unique()
    when = datetime.now(UTC) - timedelta(days=1)
    result = service.usage.track(
        metric,
        5,
        developer_id=DEMO,
        timestamp=when,
        metadata={"route": "/v1/things", "cost": Decimal("0.000000001"), "tags": ["a", 1, True, None]},
    )
    assert result.status == "recorded"
    history = service.usage.history(days=2, metric=metric, developer_id=DEMO)
    assert [e.date for e in history.entries] == [when.date(), today()]
    assert history.entries[0].metrics[metric] == 5  # the timestamp decides the day
    assert history.entries[1].metrics[metric] == 0


def test_history_ranges_and_months(dev: UsageMeter) -> None:
    week = dev.usage.history(start_date=today() - timedelta(days=6), end_date=today().isoformat())
    assert [e.date for e in week.entries] == [today() - timedelta(days=n) for n in range(6, -1, -1)]
    assert week.granularity == "day"
    months = dev.usage.history(days=40, granularity="month")
    assert months.granularity == "month"
    assert all(e.date.day == 1 for e in months.entries)
    assert months.entries[-1].date == today().replace(day=1)
    default = dev.usage.history()
    assert len(default.entries) == 30


def test_track_batch(dev: UsageMeter, service: UsageMeter) -> None:
    metric, key = unique(), unique("key")
    batch = service.usage.track_batch(
        [
            UsageEvent(metric, Decimal("1.5"), idempotency_key=key, developer_id=DEMO),
            {"metric": metric, "quantity": 2, "developer_id": DEMO},
            UsageEvent(metric, 0, developer_id=DEMO),  # invalid: refused alone, the others still count
            UsageEvent(metric, Decimal("1.5"), idempotency_key=key, developer_id=DEMO),
        ]
    )
    assert isinstance(batch, BatchResult)
    assert [r.status for r in batch.results] == ["recorded", "recorded", "rejected", "duplicate"]
    assert (batch.recorded, batch.duplicates, batch.rejected) == (2, 1, 1)
    assert [r.index for r in batch.failed] == [2]
    assert batch.failed[0].error is not None
    assert batch.failed[0].error.code == "validation_error"
    assert batch.results[1].idempotency_key  # generated by the client
    assert dev.usage.current(metric=metric).metrics[metric].consumed == Decimal("3.5")


def test_entitlements(dev: UsageMeter, service: UsageMeter) -> None:
    assert dev.entitlements.check("api_calls") is True
    entitlement = dev.entitlements.get("api_calls")
    assert isinstance(entitlement, Entitlement)
    assert entitlement.has_access
    assert (entitlement.limit, entitlement.enforcement) == (Decimal(100000), "hard")
    assert entitlement.limit is not None
    assert entitlement.remaining == entitlement.limit - entitlement.consumed
    assert entitlement.resets_at == dev.usage.current().period.end
    assert dev.entitlements.check(unique()) is False  # not in the plan
    assert service.entitlements.get("tokens", developer_id=DEMO).enforcement == "soft"
    assert service.entitlements.check("tokens", developer_id=DEMO) is True


# ---- every error type, from real answers --------------------------------------------------


@pytest.mark.parametrize("key", ["um_live_" + "x" * 32, "not-a-key"])
def test_bad_key_is_authentication_error(local_stack: dict[str, Any], key: str) -> None:
    with UsageMeter(api_key=key, base_url=local_stack["base"]) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.usage.current()
        with pytest.raises(AuthenticationError):
            client.usage.track("api_calls", 1)
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")
    assert isinstance(caught.value, UsageMeterError)
    assert caught.value.message


def test_errors_carry_the_gateways_request_id(service: UsageMeter, local_stack: dict[str, Any]) -> None:
    """The local gateway names each request in `apigw-requestid`, as API Gateway does, so
    `.request_id` works locally too: one id per request, on the gateway's own 404 as well."""
    ids = []
    for _ in range(2):
        with pytest.raises(NotFoundError) as caught:
            service.usage.current(developer_id=unique("dev_nobody"))
        ids.append(caught.value.request_id)
    assert ids[0] != ids[1]
    for request_id in ids:
        assert re.fullmatch(r"[0-9a-f-]{36}", request_id or ""), ids
    unrouted = httpx.get(f"{local_stack['base']}/v1/nowhere")
    assert (unrouted.status_code, unrouted.json()) == (404, {"message": "Not Found"})
    assert unrouted.headers["apigw-requestid"] not in ids


def test_developer_key_for_another_developer_is_permission_denied(dev: UsageMeter) -> None:
    with pytest.raises(PermissionDeniedError) as caught:
        dev.usage.history(developer_id="dev_other")
    assert (caught.value.status, caught.value.code) == (403, "forbidden")
    with pytest.raises(PermissionDeniedError):
        dev.usage.track(unique(), 1, developer_id="dev_other")


def test_developer_key_cannot_track(dev: UsageMeter) -> None:
    """Only the provider's backend tracks: a developer key is refused, single or batch, and
    nothing is counted (it would be a way to skip, forge or pre-claim usage)."""
    metric = unique()
    for attempt in (
        lambda: dev.usage.track(metric, 1, idempotency_key=unique("invoice")),
        lambda: dev.usage.track(metric, 1, developer_id=DEMO),
        lambda: dev.usage.track_batch([UsageEvent(metric, 1)]),
    ):
        with pytest.raises(PermissionDeniedError) as caught:
            attempt()
        assert (caught.value.status, caught.value.code) == (403, "forbidden")
        assert caught.value.message == "tracking needs a service key"
    assert metric not in dev.usage.current().metrics


def test_unknown_developer_is_not_found(service: UsageMeter) -> None:
    with pytest.raises(NotFoundError) as caught:
        service.usage.current(developer_id=unique("dev_nobody"))
    assert (caught.value.status, caught.value.code) == (404, "developer_not_found")
    with pytest.raises(NotFoundError):
        service.entitlements.check("api_calls", developer_id=unique("dev_nobody"))


def test_reused_key_with_another_event_is_conflict(dev: UsageMeter, service: UsageMeter) -> None:
    metric, key = unique(), unique("key")
    service.usage.track(metric, 1, idempotency_key=key, developer_id=DEMO)
    with pytest.raises(ConflictError) as caught:
        service.usage.track(metric, 2, idempotency_key=key, developer_id=DEMO)
    assert (caught.value.status, caught.value.code) == (409, "idempotency_key_reused")
    assert dev.usage.current(metric=metric).metrics[metric].consumed == 1


@pytest.mark.parametrize(
    ("quantity", "timestamp", "code"),
    [
        (0, None, "validation_error"),
        (Decimal("-1"), None, "quantity_not_positive"),  # a sum meter's rule
        (Decimal("0.0000000001"), None, "validation_error"),  # 10 decimal places
        (Decimal("1E+13"), None, "validation_error"),
        (1, datetime.now(UTC) - timedelta(days=60), "timestamp_out_of_range"),
    ],
)
def test_invalid_event_is_validation_error(
    dev: UsageMeter, service: UsageMeter, quantity: Decimal | int, timestamp: datetime | None, code: str
) -> None:
    metric = unique()
    with pytest.raises(ValidationError) as caught:
        service.usage.track(metric, quantity, timestamp=timestamp, developer_id=DEMO)
    assert (caught.value.status, caught.value.code) == (422, code)
    assert isinstance(caught.value, BadRequestError)
    assert metric not in dev.usage.current().metrics


def test_invalid_query_is_validation_error(dev: UsageMeter) -> None:
    with pytest.raises(ValidationError) as caught:
        dev.usage.history(days=400)
    assert caught.value.status == 422
    assert caught.value.details  # the field paths
    with pytest.raises(ValidationError) as ranged:
        dev.usage.current(period="day", start_date=today())
    assert ranged.value.code == "invalid_range"


def test_hard_limit_is_limit_exceeded_and_not_retried(tiny: dict[str, str]) -> None:
    transport = Recording()
    developer = tiny["developer_id"]
    with (
        UsageMeter(api_key=tiny["service_key"], base_url=tiny["base"], transport=transport) as backend,
        UsageMeter(api_key=tiny["key"], base_url=tiny["base"]) as client,
    ):
        assert backend.usage.track("api_calls", 2, developer_id=developer).status == "recorded"
        assert client.entitlements.check("api_calls") is True
        sent = len(transport.requests)
        with pytest.raises(LimitExceededError) as caught:
            backend.usage.track("api_calls", 2, developer_id=developer)
        assert len(transport.requests) == sent + 1  # a hard limit is not retried
        error = caught.value
        assert (error.status, error.code) == (429, "limit_exceeded")
        assert error.retry_after is not None
        assert error.retry_after > 0
        assert error.usage is not None
        assert (error.usage.consumed, error.usage.limit, error.usage.remaining) == (
            Decimal(2),
            Decimal(3),
            Decimal(1),
        )
        assert client.usage.current().metrics["api_calls"].consumed == 2  # nothing counted
        assert (
            backend.usage.track("api_calls", 1, developer_id=developer).usage is not None
        )  # the last unit fits
        assert client.entitlements.check("api_calls") is False
        entitlement = client.entitlements.get("api_calls")
        assert (entitlement.has_access, entitlement.remaining) == (False, Decimal(0))


def _silent_server() -> socket.socket:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server


def test_no_answer_in_time_is_timeout_error_after_retries() -> None:
    with contextlib.closing(_silent_server()) as server:
        transport = Recording()
        base = f"http://127.0.0.1:{server.getsockname()[1]}"
        with (
            UsageMeter(
                api_key="um_live_" + "x" * 32,
                base_url=base,
                timeout=0.2,
                max_retries=1,
                transport=transport,
                backoff=BACKOFF,
                max_backoff=MAX_BACKOFF,
            ) as client,
            pytest.raises(APITimeoutError) as caught,
        ):
            client.usage.track("api_calls", 1)
    assert isinstance(caught.value, APIConnectionError)
    assert caught.value.status is None
    assert len(transport.requests) == 2
    bodies = [r.content for r in transport.requests]
    assert bodies[0] == bodies[1]  # the retry carried the same generated idempotency key


def test_nothing_listening_is_connection_error_after_retries() -> None:
    transport = Recording()
    with (
        UsageMeter(
            api_key="um_live_" + "x" * 32,
            base_url=f"http://127.0.0.1:{free_port()}",
            max_retries=2,
            transport=transport,
            backoff=BACKOFF,
            max_backoff=MAX_BACKOFF,
        ) as client,
        pytest.raises(APIConnectionError) as caught,
    ):
        client.usage.current()
    assert not isinstance(caught.value, APITimeoutError)
    assert caught.value.code == "connection_error"
    assert len(transport.requests) == 3


# ---- the retry that must not double count -------------------------------------------------------


def test_lost_answer_is_retried_with_the_same_key_and_counted_once(local_stack: dict[str, Any]) -> None:
    metric = unique()
    transport = DropFirstAnswer()
    with UsageMeter(
        api_key=local_stack["serviceKey"],
        base_url=local_stack["base"],
        transport=transport,
        backoff=BACKOFF,
        max_backoff=MAX_BACKOFF,
    ) as client:
        result = client.usage.track(metric, 3, developer_id=DEMO)  # no key given: the client makes one
        first, retry = _posted(transport.requests)
        assert first == retry
        assert first["idempotencyKey"] == result.idempotency_key
        assert json.loads(transport.dropped[0])["results"][0]["status"] == "recorded"
        assert result.status == "duplicate"  # the server had applied the first attempt
        assert client.usage.current(DEMO, metric=metric).metrics[metric].consumed == 3
    request = transport.requests[0]
    assert request.headers["authorization"] == f"Bearer {local_stack['serviceKey']}"
    assert request.headers["user-agent"].startswith("usage-meter-client/")
    assert b'"quantity":3' in request.content


# ---- the async twin ---------------------------------------------------------------------------


def test_async_every_method(local_stack: dict[str, Any]) -> None:
    async def scenario() -> None:
        metric = unique()
        async with AsyncUsageMeter(
            api_key=local_stack["serviceKey"], base_url=local_stack["base"]
        ) as backend:
            tracked = await backend.usage.track(metric=metric, quantity=Decimal("0.1"), developer_id=DEMO)
            assert tracked.status == "recorded"
            batch = await backend.usage.track_batch(
                [
                    UsageEvent(metric, Decimal("0.2"), developer_id=DEMO),
                    {"metric": metric, "quantity": 1, "developer_id": DEMO},
                ]
            )
            assert batch.recorded == 2
        async with AsyncUsageMeter(
            api_key=local_stack["developerKey"], base_url=local_stack["base"]
        ) as client:
            current, history, entitlement, allowed = await asyncio.gather(
                client.usage.current(metric=metric),
                client.usage.history(days=3, metric=metric),
                client.entitlements.get("api_calls"),
                client.entitlements.check("api_calls"),
            )
            assert current.metrics[metric].consumed == Decimal("1.3")
            assert [e.date for e in history.entries][-1] == today()
            assert history.total(metric) == Decimal("1.3")
            assert entitlement.has_access
            assert allowed
        async with AsyncUsageMeter(api_key=local_stack["serviceKey"], base_url=local_stack["base"]) as client:
            assert (await client.usage.current(DEMO, period="day")).developer_id == DEMO

    asyncio.run(scenario())


def test_async_errors(local_stack: dict[str, Any], tiny: dict[str, str]) -> None:
    base = local_stack["base"]

    async def scenario() -> None:
        async with AsyncUsageMeter(api_key="um_live_" + "x" * 32, base_url=base) as client:
            with pytest.raises(AuthenticationError):
                await client.usage.current()
        async with AsyncUsageMeter(api_key=local_stack["developerKey"], base_url=base) as client:
            with pytest.raises(PermissionDeniedError):
                await client.usage.current(developer_id="dev_other")
            with pytest.raises(PermissionDeniedError):
                await client.usage.track(unique(), 1)  # developer keys only read
        async with AsyncUsageMeter(api_key=local_stack["serviceKey"], base_url=base) as client:
            with pytest.raises(ValidationError):
                await client.usage.track(unique(), Decimal("-2"), developer_id=DEMO)
            metric, key = unique(), unique("key")
            await client.usage.track(metric, 1, idempotency_key=key, developer_id=DEMO)
            with pytest.raises(ConflictError):
                await client.usage.track(metric, 5, idempotency_key=key, developer_id=DEMO)
            with pytest.raises(NotFoundError):
                await client.usage.history(developer_id=unique("dev_nobody"))
            with pytest.raises(LimitExceededError) as caught:
                await client.usage.track("api_calls", 100, developer_id=tiny["developer_id"])
            assert caught.value.usage is not None
            assert caught.value.usage.limit == 3

    asyncio.run(scenario())


def test_async_lost_answer_is_counted_once(local_stack: dict[str, Any]) -> None:
    metric = unique()
    transport = AsyncDropFirstAnswer()

    async def scenario() -> None:
        async with AsyncUsageMeter(
            api_key=local_stack["serviceKey"],
            base_url=local_stack["base"],
            transport=transport,
            backoff=BACKOFF,
            max_backoff=MAX_BACKOFF,
        ) as client:
            result = await client.usage.track(metric, Decimal("0.25"), developer_id=DEMO)
            assert result.status == "duplicate"
            first, retry = _posted(transport.requests)
            assert first == retry
            assert first["idempotencyKey"] == result.idempotency_key
            consumed = (await client.usage.current(DEMO, metric=metric)).metrics[metric].consumed
            assert consumed == Decimal("0.25")

    asyncio.run(scenario())
