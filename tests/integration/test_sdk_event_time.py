"""The SDK stamps an event's time when the event is created, so a resend with the same key is a
duplicate inside the backdating window and refused as too old after it: never counted twice.
(Left to the service, the time was that of each send, and a resend after the key's 36 days
was recorded again.) The SDK talks to the handlers in-process, the service's clock moved."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from usage_meter_client import UsageEvent, UsageMeter, ValidationError

from helpers import SERVICE, counters
from integration.conftest import Stack

ALICE = "dev_alice"


@pytest.fixture
def client(stack: Stack) -> Iterator[UsageMeter]:
    """The SDK with a service key, its requests answered by the local handlers."""

    def serve(request: httpx.Request) -> httpx.Response:
        answer = stack.call(
            request.method,
            request.url.path,
            body=request.content.decode() or None,
            query=dict(request.url.params) or None,
            auth=SERVICE,
        )
        return httpx.Response(answer.status, content=answer.body.encode(), headers=answer.headers)

    with UsageMeter(
        api_key="um_live_" + "s" * 32,
        base_url="http://usage.test",
        max_retries=0,
        transport=httpx.MockTransport(serve),
    ) as sdk:
        yield sdk


def test_a_resend_after_36_days_is_refused_not_counted_again(
    stack: Stack, client: UsageMeter, freeze: Callable[[datetime], None]
) -> None:
    created = datetime.now(UTC)
    event = UsageEvent("emails", 1, idempotency_key="invoice-42", developer_id=ALICE)
    freeze(created)
    assert client.usage.track_batch([event]).results[0].status == "recorded"
    freeze(created + timedelta(days=1))
    assert client.usage.track_batch([event]).results[0].status == "duplicate"
    freeze(created + timedelta(days=36, minutes=1))  # the key's record has expired
    late = client.usage.track_batch([event]).results[0]
    assert late.status == "rejected"
    assert late.error is not None
    assert late.error.code == "timestamp_out_of_range"
    day = created.date().isoformat()
    assert counters(stack.dynamodb, stack.usage_table) == {
        (f"DEV#{ALICE}", f"D#{day}#emails"): (1, 1),
        (f"DEV#{ALICE}", f"M#{day[:7]}#emails"): (1, 1),
    }


def test_a_single_track_sends_the_time_of_the_call(
    stack: Stack, client: UsageMeter, freeze: Callable[[datetime], None]
) -> None:
    """The service judges the client's time: one 36 days old is refused, whatever its clock says."""
    freeze(datetime.now(UTC) + timedelta(days=36))
    with pytest.raises(ValidationError) as refused:
        client.usage.track("emails", 1, developer_id=ALICE, idempotency_key="k")
    assert refused.value.code == "timestamp_out_of_range"
    assert counters(stack.dynamodb, stack.usage_table) == {}
