"""What one request does when DynamoDB's answer to a commit is lost, when a later part of a batch
fails, and when the function's time runs out, on DynamoDB Local (which, unlike moto, applies a
TransactWriteItems once per ClientRequestToken).

Failures are made at botocore's HTTP layer by `CommitFaults`: an attempt can really be sent to
DynamoDB Local, applied there, and its answer replaced by a 500, a
TransactionInProgressException or a read timeout. Every request here uses the service key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from usage_meter_local.invoke import Answer

from engine.conftest import EngineStack
from engine.support import CommitFaults, Container, expected_counters, tokens_used, track
from helpers import MADE_KEY, SERVICE, counters, iso, table_items

pytestmark = pytest.mark.engine

Report = Callable[[str], None]
DEVELOPER = "dev_commits"
LAMBDA_TIMEOUT_S = 10  # template.yaml's Timeout of the track function


def events(count: int, *, keyed: bool, metrics: int = 1, prefix: str = "e") -> list[dict[str, Any]]:
    """`count` events of DEVELOPER a minute ago, over `metrics` metrics, with keys or without."""
    moment = iso(datetime.now(UTC) - timedelta(minutes=1))
    made = [
        {
            "developerId": DEVELOPER,
            "metric": f"m{i % metrics}",
            "quantity": Decimal(i + 1) / 4,
            "timestamp": moment,
        }
        for i in range(count)
    ]
    if keyed:
        for i, event in enumerate(made):
            event["idempotencyKey"] = f"{prefix}-{i}"
    return made


def body_of(sent: list[dict[str, Any]]) -> Any:
    return sent[0] if len(sent) == 1 else {"events": sent}


def stored_keys(engine: EngineStack) -> set[str]:
    return {r["pk"]["S"] for r in table_items(engine.dynamodb, engine.idempotency_table)}


def timed(container: Container, body: Any) -> tuple[Answer, float]:
    started = time.monotonic()
    answer = track(container, body, SERVICE)
    return answer, time.monotonic() - started


# ---- a commit whose answer is lost (issue: unknown outcomes) ---------------------------------


LOST = [
    pytest.param("server_error", 4, id="500-after-applied"),
    pytest.param("in_progress", 4, id="in-progress-after-applied"),
    pytest.param("timeout", 4, id="read-timeout-after-applied"),
    pytest.param("server_error", None, id="every-answer-lost-until-the-deadline"),
]


@pytest.mark.parametrize(("kind", "lost"), LOST)
@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "no-keys"])
def test_a_commit_whose_answer_is_lost_is_retried_unchanged_and_counts_once(
    engine: EngineStack, report: Report, kind: str, lost: int | None, keyed: bool
) -> None:
    """The write is applied, then its answer is lost `lost` times (botocore's 3 tries and one
    more of the service's; None: every time). The request retries the very same transaction (one ClientRequestToken),
    answers `recorded`, not `duplicate`, and the events are counted once; with every answer
    lost it reads back what it wrote before its deadline."""
    engine.add_developers([DEVELOPER], ["m0", "m1"])
    faults = CommitFaults(kind, applied=True, attempts=lost)
    container = engine.containers(1, faults.install, LAMBDA_TIMEOUT_S)[0]
    sent = events(5, keyed=keyed, metrics=2)

    for body in (body_of(sent[:1]), body_of(sent[1:])):  # a single event, then a batch
        answer, took = timed(container, body)
        assert answer.status == 200, answer.body
        results = answer.json()["results"]
        assert [r["status"] for r in results] == ["recorded"] * len(results), answer.body
        assert len({r["recordedAt"] for r in results}) == 1
        assert took < LAMBDA_TIMEOUT_S

    stats = container.stats()
    assert stats["applied"] >= 1  # a write really was applied and its answer lost
    assert len(tokens_used(stats)) == 2  # one per request: every retry sent the same token
    assert counters(engine.dynamodb, engine.usage_table) == expected_counters(sent)
    assert len(stored_keys(engine)) == 5
    report(f"{kind}, {lost or 'every'} answers lost: {stats['faulted']} faulted attempts, 2 tokens")


# ---- a batch whose later part fails (issue: committed parts are kept) ------------------------


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(CommitFaults("connection_error", spare=1), id="connection-error"),
        pytest.param(CommitFaults("server_error", spare=1, delay_s=1.5), id="slow-500s-until-the-deadline"),
    ],
)
def test_a_batch_keeps_the_parts_committed_before_one_that_fails(
    engine: EngineStack, report: Report, fault: CommitFaults
) -> None:
    """100 events without keys on 100 metrics take 4 transactions; the first commits, the second
    keeps failing. The answer is 200: the first part `recorded` (each with the key the service
    made), the rest `temporarily_unavailable` with their keys too, before the deadline. Resending
    the refused ones with those keys counts each exactly once."""
    engine.add_developers([DEVELOPER], [f"m{i}" for i in range(100)])
    container = engine.containers(1, fault.install, LAMBDA_TIMEOUT_S)[0]
    sent = events(100, keyed=False, metrics=100)

    answer, took = timed(container, {"events": sent})

    assert answer.status == 200, answer.body
    body = answer.json()
    results = body["results"]
    recorded = [i for i, r in enumerate(results) if r["status"] == "recorded"]
    refused = [i for i, r in enumerate(results) if r["status"] == "rejected"]
    assert recorded == list(range(33))  # the first transaction: 33 records + 33 x 2 counters + 1
    assert refused == list(range(33, 100))
    assert {results[i]["error"]["code"] for i in refused} == {"temporarily_unavailable"}
    assert (body["recorded"], body["rejected"]) == (33, 67)
    assert all(MADE_KEY.fullmatch(r["idempotencyKey"]) for r in results)
    assert took < LAMBDA_TIMEOUT_S
    # what landed is the first part, exactly, with its records
    assert counters(engine.dynamodb, engine.usage_table) == expected_counters(sent[:33])
    assert stored_keys(engine) == {f"{DEVELOPER}#{results[i]['idempotencyKey']}" for i in recorded}

    # the client resends the refused events with the keys of their results, and the whole batch
    resend = [{**sent[i], "idempotencyKey": results[i]["idempotencyKey"]} for i in refused]
    again = track(engine.containers(1, timeout_s=LAMBDA_TIMEOUT_S)[0], {"events": resend}, SERVICE)
    assert [r["status"] for r in again.json()["results"]] == ["recorded"] * 67
    assert counters(engine.dynamodb, engine.usage_table) == expected_counters(sent)
    report(f"{fault.kind}: answered in {took:.1f} s, 33 recorded, 67 temporarily_unavailable")


# ---- the function's deadline (issue: never a timeout) ---------------------------------------


def test_slow_failures_are_answered_before_the_lambda_timeout(engine: EngineStack, report: Report) -> None:
    """Every commit attempt takes 1.9 s and fails with a 500 (nothing applied): botocore's 3 tries
    per call and the service's 12 commit attempts would take a minute. The request answers 503
    temporarily_unavailable inside the function's 10 s, nothing counted; the next request in
    the same container, which touches a metric that does not fail, gets the full time again
    (the deadline does not outlive its invocation)."""
    engine.add_developers([DEVELOPER], ["m0", "fine"])
    faults = CommitFaults("server_error", metric="m0", delay_s=1.9)
    container = engine.containers(1, faults.install, LAMBDA_TIMEOUT_S)[0]

    answer, took = timed(container, events(1, keyed=True)[0])

    assert answer.status == 503, answer.body
    assert answer.json()["error"]["code"] == "temporarily_unavailable"
    assert took < LAMBDA_TIMEOUT_S
    assert counters(engine.dynamodb, engine.usage_table) == {}
    assert stored_keys(engine) == set()

    fine = {**events(1, keyed=True, prefix="fine")[0], "metric": "fine"}
    later, _ = timed(container, fine)
    assert later.status == 200, later.body
    assert later.json()["results"][0]["status"] == "recorded"
    report(f"answered 503 after {took:.1f} s ({container.stats()['faulted']} slow attempts)")


def test_no_time_left_answers_what_is_known_without_calling_dynamodb(engine: EngineStack) -> None:
    """An invocation that starts with less time than one commit attempt needs does not start one:
    every event is answered temporarily_unavailable at once."""
    engine.add_developers([DEVELOPER], ["m0"])
    # 6 s - the 0.5 s margin leaves less than a commit needs (2 attempts of 3 s), enough for reads
    container = engine.containers(1, timeout_s=6)[0]

    answer, took = timed(container, {"events": events(3, keyed=True)})

    assert answer.status == 200, answer.body
    assert {r["error"]["code"] for r in answer.json()["results"]} == {"temporarily_unavailable"}
    assert took < 3
    assert counters(engine.dynamodb, engine.usage_table) == {}
