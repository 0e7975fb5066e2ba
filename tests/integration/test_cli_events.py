"""`usage-meter events list|cancel|amend`: the event log as a table, and corrections from the CLI."""

from __future__ import annotations

import json
from decimal import Decimal

from helpers import counters
from integration.conftest import Run, Stack


def test_list_cancel_and_amend_from_the_cli(stack: Stack, run: Run) -> None:
    sent = [
        {"metric": "api_calls", "quantity": q, "idempotencyKey": f"cli{q}", "metadata": {"endpoint": "/x"}}
        for q in (2, 3)
    ]
    assert stack.track({"events": sent}).json()["recorded"] == 2
    code, out, err = run("events", "list", "--developer", "dev_alice")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split("\t") == ["TIMESTAMP", "KEY", "METRIC", "QUANTITY", "STATUS", "REV", "METADATA"]
    assert sorted(line.split("\t")[1] for line in lines[1:]) == ["cli2", "cli3"]
    code, out, err = run("events", "cancel", "cli2", "--developer", "dev_alice", "--reason", "duplicate job")
    assert (code, err) == (0, "")
    # (the handlers' structured log lines share stdout in this process: the answer is the last line)
    assert out.splitlines()[-1] == "cancelled: cli2 (api_calls 2, cancelled, revision 1)"
    code, out, _ = run("--json", "events", "amend", "cli3", "--developer", "dev_alice", "--quantity", "5")
    assert code == 0
    assert json.loads(out.splitlines()[-1])["status"] == "amended"
    months = [v for (_, sk), v in counters(stack.dynamodb, stack.usage_table).items() if sk.startswith("M#")]
    assert months == [(Decimal(5), 1)]
    code, out, _ = run("--json", "events", "list", "--developer", "dev_alice", "--status", "cancelled")
    assert [e["idempotencyKey"] for e in json.loads(out)["events"]] == ["cli2"]


def test_cli_refusals_are_one_line(stack: Stack, run: Run) -> None:
    code, out, err = run("events", "cancel", "nope", "--developer", "dev_alice")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert "no event with idempotency key nope" in err
    code, out, err = run("events", "amend", "nope", "--developer", "dev_alice")
    assert (code, out, err) == (1, "", "error: give --quantity and/or --metadata\n")
