"""The event log and corrections through the API: listing, cancel, amend, and what landed."""

from __future__ import annotations

from typing import Any

from usage_meter_local.invoke import Answer

from helpers import DEV_A, SERVICE, counters
from integration.conftest import Stack


def cancel(
    stack: Stack,
    key: str,
    *,
    developer: str = "dev_alice",
    auth: dict[str, Any] = SERVICE,
    reason: str = "wrong",
) -> Answer:
    body = {"developerId": developer, "idempotencyKey": key, "reason": reason}
    return stack.call("POST", "/v1/usage/events/cancel", body=body, auth=auth)


def amend(
    stack: Stack, key: str, *, developer: str = "dev_alice", auth: dict[str, Any] = SERVICE, **change: Any
) -> Answer:
    body = {"developerId": developer, "idempotencyKey": key, "reason": "fixed", **change}
    return stack.call("POST", "/v1/usage/events/amend", body=body, auth=auth)


def events(stack: Stack, *, auth: dict[str, Any] = DEV_A, **query: str) -> Answer:
    return stack.call("GET", "/v1/usage/events", query=query or None, auth=auth)


def test_cancel_moves_every_counter_back(stack: Stack) -> None:
    batch = [{"metric": "api_calls", "quantity": q, "idempotencyKey": f"k{q}"} for q in (3, 5)]
    assert stack.track({"events": batch}).status == 200
    answer = cancel(stack, "k3")
    assert answer.status == 200, answer.body
    body = answer.json()
    assert (body["status"], body["revision"], body["event"]["status"]) == ("cancelled", 1, "cancelled")
    print(counters(stack.dynamodb, stack.usage_table))
    again = cancel(stack, "k3")
    assert again.json()["status"] == "already_cancelled"
    listed = events(stack)
    assert listed.status == 200, listed.body
    print(listed.json())
