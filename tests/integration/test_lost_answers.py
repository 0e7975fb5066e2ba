"""A commit whose answer is lost, against moto: moto ignores ClientRequestToken, so the retry of
an applied transaction is applied again and refused by the records the first attempt wrote.
The request must recognise its own records and answer `recorded`. (DynamoDB itself applies a
token once: tests/engine/test_commit_outcomes.py.)"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from usage_meter.store import dynamodb as store_db

from helpers import MADE_KEY, SERVICE, counters, table_items
from integration.conftest import Stack

DEVELOPER = SERVICE["developerId"]  # the stack gives the service's id a developer profile too


class LosesFirstCommitAnswer:
    """The store's client, except that the first TransactWriteItems is applied and then answered
    with a 500 InternalServerError."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.commits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        self.commits += 1
        answer = self._real.transact_write_items(**kwargs)
        if self.commits > 1:
            return answer
        error: Any = {"Error": {"Code": "InternalServerError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}
        raise ClientError(error, "TransactWriteItems")


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "no-key"])
def test_a_retry_refused_by_its_own_records_is_answered_recorded(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, keyed: bool
) -> None:
    event: dict[str, Any] = {"developerId": DEVELOPER, "metric": "api_calls", "quantity": 3}
    if keyed:
        event["idempotencyKey"] = "first-time"
    lossy = LosesFirstCommitAnswer(store_db.client())
    with monkeypatch.context() as patch:  # undone before the stack's teardown resets the client
        patch.setattr(store_db, "client", lambda: lossy)
        answer = stack.track(event, auth=SERVICE)

    assert answer.status == 200, answer.body
    (result,) = answer.json()["results"]
    assert result["status"] == "recorded"
    assert lossy.commits == 2  # applied, answer lost; applied again, refused by its own record
    key = result["idempotencyKey"]
    assert key == "first-time" if keyed else MADE_KEY.fullmatch(key)
    (record,) = table_items(stack.dynamodb, stack.idempotency_table)
    assert record["pk"]["S"] == f"{DEVELOPER}#{key}"
    assert record["recordedAt"]["S"] == result["recordedAt"]
    month = result["recordedAt"][:7]
    assert counters(stack.dynamodb, stack.usage_table)[(f"DEV#{DEVELOPER}", f"M#{month}#api_calls")] == (
        Decimal(3),
        1,
    )
