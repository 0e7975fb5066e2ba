"""The DynamoDB deadline: what an attempt needs, and that a deadline ends with its invocation."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from usage_meter.store import dynamodb
from usage_meter.store.dynamodb import (
    ATTEMPT_S,
    SAFETY_MARGIN_S,
    Deadline,
    DeadlineReached,
    time_for,
    working_to,
)

# pytest-socket warns each time it blocks; a refused attempt must never get that far
pytestmark = pytest.mark.filterwarnings("error:A test tried to use socket")


def in_(seconds: float) -> Deadline:
    return Deadline(time.monotonic() + seconds)


def test_a_commit_needs_room_for_itself_and_reading_it_back() -> None:
    with working_to(in_(2 * ATTEMPT_S + 0.5)):
        assert time_for("TransactWriteItems")
    with working_to(in_(2 * ATTEMPT_S - 0.5)):
        assert not time_for("TransactWriteItems")
        assert time_for("GetItem")
    with working_to(in_(ATTEMPT_S - 0.5)):
        assert not time_for("GetItem")


def test_the_deadline_keeps_a_margin_inside_the_lambda_time() -> None:
    deadline = Deadline.within(10_000)
    assert 10 - SAFETY_MARGIN_S - 0.1 < deadline.left() <= 10 - SAFETY_MARGIN_S


def test_a_deadline_ends_with_its_block_even_when_it_raises() -> None:
    """The deadline of one invocation never constrains the next one in the same container."""
    assert time_for("TransactWriteItems")  # no deadline: no limit

    def failing_invocation() -> None:
        with working_to(in_(0)):
            assert not time_for("GetItem")
            raise RuntimeError("the handler failed")

    with pytest.raises(RuntimeError):
        failing_invocation()
    assert time_for("TransactWriteItems")
    with working_to(in_(0)), working_to(None):  # an inner block without one, then the outer again
        assert time_for("GetItem")
    assert time_for("GetItem")


@pytest.fixture
def store_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, table in (("USAGE_TABLE", "u"), ("IDEMPOTENCY_TABLE", "i"), ("ACCOUNTS_TABLE", "a")):
        monkeypatch.setenv(name, table)
    monkeypatch.setenv("DYNAMODB_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    dynamodb.reset()
    yield
    dynamodb.reset()


def test_the_store_client_refuses_an_attempt_past_the_deadline_before_sending_it(store_client: None) -> None:
    """botocore's before-send hook raises instead of sending (no socket is opened, no retry):
    a read becomes Busy (503 temporarily_unavailable)."""
    with working_to(in_(ATTEMPT_S - 1)):
        with pytest.raises(DeadlineReached):
            dynamodb.client().get_item(TableName="u", Key={"pk": {"S": "x"}})
        with pytest.raises(dynamodb.Busy, match="ran out of time"):
            dynamodb.usage_call("get_item", Key={"pk": {"S": "x"}})
