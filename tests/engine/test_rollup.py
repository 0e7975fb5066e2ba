"""The rollup against DynamoDB Local, with real concurrency: runs in separate processes (like
two Lambda invocations), racing each other and racing tracking.

Each run is a forked process with its own DynamoDB client (Powertools keeps per-process
state, see engine/support.py); inside it the rollup uses its own thread pool, as in Lambda.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier, Event
from typing import Any

import pytest

from usage_meter.domain import clock, rollup
from usage_meter.models.records import RollupReport
from usage_meter.store import dynamodb as store_db
from usage_meter.store import keys as store_keys
from usage_meter_local.template import create_tables

from engine.conftest import LOADED_MACHINE_TIMEOUT_S, EngineStack
from engine.support import all_crashes, expected_counters, quantity, recent, run_threads, track
from helpers import SERVICE, iso, table_items

pytestmark = pytest.mark.engine

Report = Callable[[str], None]
_FORK = multiprocessing.get_context("fork")
_TIMEOUT_S = 300


def _rollup_process(conn: Connection, barrier: Barrier | None, stop: Event | None, workers: int) -> None:
    """A rollup invocation in its own process: one run after the barrier, or runs until `stop`."""
    inherited = store_db.client()  # the parent's client and sockets: kept alive, never used here
    store_db.reset()
    try:
        if barrier is not None:
            barrier.wait(_TIMEOUT_S)
        reports = [rollup.run(workers=workers).model_dump(mode="json")]
        while stop is not None and not stop.is_set():
            reports.append(rollup.run(workers=workers).model_dump(mode="json"))
        conn.send(("reports", reports))
    except BaseException:
        conn.send(("crash", traceback.format_exc()))
    del inherited


class RollupProcess:
    def __init__(self, barrier: Barrier | None = None, stop: Event | None = None, workers: int = 4) -> None:
        self._conn, child = _FORK.Pipe()
        self._process = _FORK.Process(
            target=_rollup_process, args=(child, barrier, stop, workers), daemon=True
        )
        self._process.start()
        child.close()

    def reports(self) -> list[RollupReport]:
        if not self._conn.poll(_TIMEOUT_S):
            self._process.terminate()
            raise TimeoutError("the rollup process did not finish")
        kind, payload = self._conn.recv()
        self._process.join(10)
        assert kind == "reports", payload
        return [RollupReport.model_validate(r) for r in payload]


def concurrent_runs(count: int) -> list[RollupReport]:
    """`count` rollup runs in separate processes, released at the same instant."""
    barrier = _FORK.Barrier(count)
    processes = [RollupProcess(barrier) for _ in range(count)]
    return [r for p in processes for r in p.reports()]


def usage_items(engine: EngineStack) -> dict[tuple[str, str], dict[str, Any]]:
    return {(i["pk"]["S"], i["sk"]["S"]): i for i in table_items(engine.dynamodb, engine.usage_table)}


def summary_items(engine: EngineStack) -> dict[tuple[str, str], dict[str, Any]]:
    return {key: item for key, item in usage_items(engine).items() if key[1].startswith("S#")}


def delete_summaries(engine: EngineStack) -> None:
    for pk, sk in summary_items(engine):
        engine.dynamodb.delete_item(TableName=engine.usage_table, Key={"pk": {"S": pk}, "sk": {"S": sk}})


def summaries(engine: EngineStack) -> dict[tuple[str, str], tuple[Decimal, int]]:
    return {
        key: (Decimal(i["consumed"]["N"]), int(i["events"]["N"])) for key, i in summary_items(engine).items()
    }


def day_sums(engine: EngineStack) -> dict[tuple[str, str], tuple[Decimal, int]]:
    """The summaries the day counters in the table call for."""
    sums: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for (pk, sk), item in usage_items(engine).items():
        if sk.startswith("D#"):
            _, day, metric = sk.split("#", 2)
            sums[(pk, f"S#{day[:7]}#{metric}")][0] += Decimal(item["consumed"]["N"])
            sums[(pk, f"S#{day[:7]}#{metric}")][1] += int(item["events"]["N"])
    return {key: (consumed, events) for key, (consumed, events) in sums.items()}


def from_events(events: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[Decimal, int]]:
    """The summaries the events sent call for (month counters renamed to summaries)."""
    return {
        (pk, "S#" + sk[2:]): value
        for (pk, sk), value in expected_counters(events).items()
        if sk.startswith("M#")
    }


def workload(
    rng: random.Random, developers: list[str], metrics: list[str], count: int, now: datetime
) -> list[dict[str, Any]]:
    """Keyed events over the whole backdating window (so over two or three months)."""
    return [
        {
            "developerId": rng.choice(developers),
            "metric": rng.choice(metrics),
            "quantity": quantity(rng),
            "idempotencyKey": f"roll-{i:05d}",
            "timestamp": iso(recent(now, rng, rng.randint(0, 34))),
        }
        for i in range(count)
    ]


def send_all(engine: EngineStack, events: list[dict[str, Any]]) -> None:
    """Seed in batches of 100, each given Lambda's longest timeout: over 40 developers and 35
    days a batch is several transactions, which a loaded machine may not finish in the track
    function's 10 s (that deadline is tested in test_commit_outcomes.py)."""
    engine.api.timeout_s = LOADED_MACHINE_TIMEOUT_S
    for start in range(0, len(events), 100):
        answer = engine.track({"events": events[start : start + 100]}, auth=SERVICE)
        assert answer.status == 200, answer.body
        assert answer.json()["recorded"] == len(events[start : start + 100]), answer.body


@pytest.fixture
def pinned_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """One instant for the whole test, forked processes included, so that rolledUpAt is the same
    whichever run writes a summary and whole tables can be compared."""
    fixed = datetime.now(UTC).replace(microsecond=0)
    monkeypatch.setattr(clock, "now", lambda: fixed)
    return fixed


def test_concurrent_runs_leave_the_table_a_single_run_leaves(
    engine: EngineStack, pinned_clock: datetime, report: Report
) -> None:
    rng = random.Random(20261203)
    developers = [f"dev_roll{i:02d}" for i in range(40)]
    metrics = ["api_calls", "tokens", "storage_gb"]
    engine.add_developers(developers, metrics)
    events = workload(rng, developers, metrics, 800, pinned_clock)
    send_all(engine, events)

    single = rollup.run(workers=4)
    after_single = usage_items(engine)
    assert single.failed == single.drift == 0
    assert summaries(engine) == day_sums(engine) == from_events(events)
    assert single.summaries_written == single.summaries == len(from_events(events))

    delete_summaries(engine)
    started = time.monotonic()
    pair = concurrent_runs(2)
    wall = time.monotonic() - started
    assert usage_items(engine) == after_single  # every item, every attribute
    assert all(r.failed == r.drift == 0 for r in pair)
    # the conditional SET lets exactly one of the racing runs write each summary
    assert sum(r.summaries_written for r in pair) == single.summaries
    assert all(r.summaries == single.summaries for r in pair)

    trio = concurrent_runs(3)  # and again, on top: nothing changes, nothing is written
    assert usage_items(engine) == after_single
    assert [r.summaries_written for r in trio] == [0, 0, 0]
    report(
        f"{len(developers)} developers, {single.developer_months} developer-months, "
        f"{single.summaries} summaries: single run {single.duration_ms} ms; two concurrent runs "
        f"{wall:.1f} s wall, wrote {[r.summaries_written for r in pair]}"
    )


def test_a_run_racing_tracking_converges_after_one_more_run(engine: EngineStack, report: Report) -> None:
    """Rollups run back to back in another process while 8 clients track events into the whole
    backdating window; none of them may report drift, and one more run afterwards leaves
    summaries equal to the day counters and to what was sent."""
    rng = random.Random(20261204)
    developers = [f"dev_race{i:02d}" for i in range(24)]
    metrics = ["api_calls", "tokens"]
    engine.add_developers(developers, metrics)
    now = datetime.now(UTC)
    events = workload(rng, developers, metrics, 1_200, now)  # long enough for two runs to overlap it
    batches = [events[i : i + 6] for i in range(0, len(events), 6)]
    containers = engine.containers(8)
    stop = _FORK.Event()
    racing = RollupProcess(stop=stop)
    failures: list[str] = []
    lock = threading.Lock()

    def send(_: int, container: Any) -> None:
        while True:
            with lock:
                if not batches:
                    return
                batch = batches.pop()
            answer = track(container, {"events": batch}, SERVICE)
            if answer.status != 200 or answer.json()["recorded"] != len(batch):
                failures.append(f"{answer.status} {answer.body[:300]}")

    wall = run_threads(containers, send)
    stop.set()
    during = racing.reports()

    assert all_crashes(containers) == []
    assert failures == []
    assert len(during) >= 2, "the rollup did not overlap the tracking"
    assert [r.drift for r in during] == [0] * len(during)  # traffic is not drift
    assert all(r.failed == 0 for r in during)

    final = rollup.run(workers=4)
    assert (final.drift, final.failed) == (0, 0)
    assert summaries(engine) == day_sums(engine) == from_events(events)
    settled = rollup.run(workers=4)
    assert settled.summaries_written == 0
    report(
        f"{len(events)} events tracked in {wall:.1f} s while {len(during)} rollups ran "
        f"(wrote {sum(r.summaries_written for r in during)} summaries, 0 drift); the run after "
        f"wrote {final.summaries_written} of {final.summaries} summaries"
    )


def seed_counters(engine: EngineStack, counters: dict[tuple[str, str, str], tuple[Decimal, int]]) -> None:
    """Day counters (with activeDay) and their month counters, as tracking leaves them, written
    in batches: seeding thousands of developers through transactions takes minutes."""
    months: dict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    items = []
    for (developer_id, day, metric), (consumed, count) in counters.items():
        months[(developer_id, day[:7], metric)][0] += consumed
        months[(developer_id, day[:7], metric)][1] += count
        items.append(
            {
                "pk": {"S": f"DEV#{developer_id}"},
                "sk": {"S": f"D#{day}#{metric}"},
                "developerId": {"S": developer_id},
                "metric": {"S": metric},
                "day": {"S": day},
                "consumed": {"N": str(consumed)},
                "events": {"N": str(count)},
                "activeDay": {"S": store_keys.activity_key(day, developer_id)},
            }
        )
    for (developer_id, month, metric), (consumed, count) in months.items():
        items.append(
            {
                "pk": {"S": f"DEV#{developer_id}"},
                "sk": {"S": f"M#{month}#{metric}"},
                "developerId": {"S": developer_id},
                "metric": {"S": metric},
                "month": {"S": month},
                "consumed": {"N": str(consumed)},
                "events": {"N": str(count)},
            }
        )
    for start in range(0, len(items), 25):
        requests: Any = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        pending = {engine.usage_table: requests}
        while pending:
            pending = engine.dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


ROLLUP_DEVELOPERS = int(os.environ.get("ROLLUP_DEVELOPERS", "100"))


def test_run_time_for_many_developers(engine: EngineStack, report: Report) -> None:
    """Numbers: a run over ROLLUP_DEVELOPERS developers (1,000 for the README's figure), each active on 3 days of this month with
    2 metrics: first run (every summary written), a re-run (nothing to write), single-threaded
    and with the pool."""
    developer_count = ROLLUP_DEVELOPERS
    now = datetime.now(UTC)
    today = now.date()
    days = [(today - timedelta(days=back)).isoformat() for back in (0, 1, 2)]
    developers = [f"dev_n{i:05d}" for i in range(developer_count)]
    seed_counters(
        engine,
        {
            (d, day, m): (Decimal(i % 97 + 1), 1)
            for i, d in enumerate(developers)
            for day in days
            for m in ("a", "b")
        },
    )
    calls: dict[str, int] = defaultdict(int)

    def count(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls[model.name + (":index" if params.get("IndexName") else "")] += 1

    store_db.client().meta.events.register("provide-client-params.dynamodb", count)
    first = rollup.run(workers=8)
    first_calls = dict(calls)
    calls.clear()
    again_pool = rollup.run(workers=8)
    again_one = rollup.run(workers=1)

    months = {day[:7] for day in days}
    developer_months = developer_count * len(months)
    assert (first.developers, first.developer_months) == (developer_count, developer_months)
    assert first.summaries_written == first.summaries == developer_months * 2
    assert again_pool.summaries_written == again_one.summaries_written == 0
    assert first_calls["Query"] == 3 * developer_months  # month counters, day counters, summaries
    assert first_calls["UpdateItem"] == first.summaries
    assert first_calls["Query:index"] >= first.days * store_keys.ACTIVITY_SHARDS
    assert len(summaries(engine)) == first.summaries
    report(
        f"{developer_count} developers x {len(days)} days x 2 metrics: first run {first.duration_ms} ms "
        f"(8 workers; {first_calls['Query:index']} index queries, {first_calls['Query']} queries, "
        f"{first_calls['UpdateItem']} writes), re-run {again_pool.duration_ms} ms (8 workers) / "
        f"{again_one.duration_ms} ms (1 worker), nothing written"
    )


def test_local_tables_kept_from_an_older_template_get_the_activity_index(engine: EngineStack) -> None:
    """`make rollup` on data from before ActivityIndex existed: creating the tables again adds it."""
    names = dict(engine.tables)
    names["UsageTable"] = f"{engine.usage_table}-old"
    engine.dynamodb.create_table(
        TableName=names["UsageTable"],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        create_tables(engine.dynamodb, names)
        table = engine.dynamodb.describe_table(TableName=names["UsageTable"])["Table"]
        assert [i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])] == ["ActivityIndex"]
        create_tables(engine.dynamodb, names)  # and again: nothing to add
    finally:
        engine.dynamodb.delete_table(TableName=names["UsageTable"])
