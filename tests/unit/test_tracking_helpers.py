"""tracking's pure helpers: the payload hash, transaction packing and counter combining."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from usage_meter.domain import packing
from usage_meter.domain.intake import payload_hash
from usage_meter.domain.packing import MAX_TRANSACTION_ITEMS, PendingEvent, increments
from usage_meter.models.records import CounterIncrement
from usage_meter.models.wire import UsageEventIn

NOV_25 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 10, 7, 30, tzinfo=UTC)  # when a transaction is built: its minute counter
MINUTE = "2026-11-25T10:07"


def in_catalog(developer_id: str, metric: str) -> bool:
    """Every metric already in its developer's catalog: packing as the plan-declared metrics see it."""
    return True


def transaction_cost(events: list[PendingEvent]) -> int:
    return packing.transaction_cost(events, in_catalog)


def pack(events: list[PendingEvent]) -> list[list[PendingEvent]]:
    return packing.chunks(events, in_catalog)


def parsed(**fields: Any) -> UsageEventIn:
    return UsageEventIn.model_validate({"metric": "api_calls", "quantity": 1, **fields})


def make(
    index: int,
    *,
    metric: str = "api_calls",
    quantity: Decimal | int = 1,
    when: datetime = NOV_25,
    key: str | None = None,
    developer: str = "dev_alice",
) -> PendingEvent:
    """An event; without `key`, one sent without a key (the service made one for it)."""
    return PendingEvent(
        index=index,
        developer_id=developer,
        metric=metric,
        quantity=Decimal(quantity),
        event_time=when,
        idempotency_key=key or f"um_evt_{index:032x}",
        key_made=key is None,
        payload_hash="h",
        metadata=None,
    )


# ---- payload_hash --------------------------------------------------------------------------------


def test_payload_hash_is_pinned() -> None:
    """Stored records compare against this hash for 36 days: its canonical form must not drift."""
    canonical = (
        b'{"developerId":"dev_alice","metric":"api_calls","quantity":"1.5","timestamp":null,"metadata":null}'
    )
    assert (
        payload_hash("dev_alice", parsed(quantity=Decimal("1.50"))) == hashlib.sha256(canonical).hexdigest()
    )
    canonical = (
        b'{"developerId":"dev_alice","metric":"tokens","quantity":"2",'
        b'"timestamp":"2026-11-25T10:00:00.000Z","metadata":{"model":"small"}}'
    )
    event = parsed(metric="tokens", quantity=2, timestamp="2026-11-25T10:00:00Z", metadata={"model": "small"})
    assert payload_hash("dev_alice", event) == hashlib.sha256(canonical).hexdigest()


def test_payload_hash_normalizes_quantities() -> None:
    hashes = {
        payload_hash("dev_alice", parsed(quantity=quantity))
        for quantity in (Decimal("1.5"), Decimal("1.50"), Decimal("1.500000000"), Decimal("15E-1"), 1.5)
    }
    assert len(hashes) == 1
    assert payload_hash("dev_alice", parsed(quantity=2)) == payload_hash(
        "dev_alice", parsed(quantity=Decimal("2.0"))
    )


def test_payload_hash_leaves_a_defaulted_timestamp_out() -> None:
    """A retry of an event sent without a timestamp is the same event, whenever it is retried."""
    first, retry = parsed(), parsed()
    assert payload_hash("dev_alice", first) == payload_hash("dev_alice", retry)
    explicit_now = parsed(timestamp="2026-11-25T10:00:00Z")
    assert payload_hash("dev_alice", first) != payload_hash("dev_alice", explicit_now)


def test_payload_hash_compares_instants_not_spellings() -> None:
    spellings = ("2026-11-25T10:00:00Z", "2026-11-25T11:00:00+01:00", "2026-11-25t10:00:00.000z")
    assert len({payload_hash("dev_alice", parsed(timestamp=t)) for t in spellings}) == 1


def test_payload_hash_ignores_the_idempotency_key_itself() -> None:
    assert payload_hash("dev_alice", parsed(idempotencyKey="a")) == payload_hash("dev_alice", parsed())


def test_payload_hash_tells_different_events_apart() -> None:
    base = payload_hash("dev_alice", parsed())
    others = [
        payload_hash("dev_bob", parsed()),
        payload_hash("dev_alice", parsed(metric="tokens")),
        payload_hash("dev_alice", parsed(quantity=2)),
        payload_hash("dev_alice", parsed(quantity=Decimal("1.000000001"))),
        payload_hash("dev_alice", parsed(timestamp="2026-11-25T10:00:00Z")),
        payload_hash("dev_alice", parsed(timestamp="2026-11-25T10:00:00.001Z")),
        payload_hash("dev_alice", parsed(metadata={})),
        payload_hash("dev_alice", parsed(metadata={"a": 1})),
        payload_hash("dev_alice", parsed(metadata={"a": "1"})),
    ]
    assert len({base, *others}) == len(others) + 1


def test_payload_hash_normalizes_numbers_inside_metadata() -> None:
    assert payload_hash("dev_alice", parsed(metadata={"ratio": Decimal("0.50")})) == payload_hash(
        "dev_alice", parsed(metadata={"ratio": Decimal("0.5")})
    )


def test_payload_hash_ignores_metadata_key_order() -> None:
    """JSON object members are unordered: a client retrying with its metadata serialized in
    another order sends the same event, not "a different payload" (409)."""
    ordered = parsed(metadata={"region": "eu", "plan": {"tier": 1, "seats": 5}})
    reordered = parsed(metadata={"plan": {"seats": 5, "tier": 1}, "region": "eu"})
    assert payload_hash("dev_alice", ordered) == payload_hash("dev_alice", reordered)


# ---- chunks ---------------------------------------------------------------------------------------


def sizes(chunks: list[list[PendingEvent]]) -> list[int]:
    return [len(chunk) for chunk in chunks]


def test_100_keyed_events_on_one_counter_take_two_transactions() -> None:
    # 97 records + day, month and minute counters = 100 items; the last 3 events go in a second one
    events = [make(i, key=f"k{i}") for i in range(100)]
    chunks = pack(events)
    assert sizes(chunks) == [97, 3]
    assert [e.index for chunk in chunks for e in chunk] == list(range(100))
    assert [transaction_cost(chunk) for chunk in chunks] == [100, 6]


def test_events_sent_without_a_key_count_their_record_too() -> None:
    # the key the service made is stored like a client's: 97 records + 3 counters per transaction
    chunks = pack([make(i) for i in range(100)])
    assert sizes(chunks) == [97, 3]
    assert [transaction_cost(chunk) for chunk in chunks] == [100, 6]


def test_events_on_distinct_metrics_cost_three_items_each() -> None:
    # plus the developer's one minute counter per transaction
    for key in ("k", None):
        events = [make(i, metric=f"m{i}", key=f"{key}{i}" if key else None) for i in range(100)]
        assert sizes(pack(events)) == [33, 33, 33, 1]


def test_events_on_several_days_of_one_month_share_the_month_counter() -> None:
    # 40 events on 40 days over two months: 40 records + 40 day counters + 2 month counters + 1 minute
    start = datetime(2026, 10, 15, 12, tzinfo=UTC)
    events = [make(i, when=start + timedelta(days=i)) for i in range(40)]
    assert {e.period for e in events} == {"2026-10", "2026-11"}
    chunks = pack(events)
    assert sizes(chunks) == [40]
    assert transaction_cost(chunks[0]) == 83


def test_no_events_no_transactions() -> None:
    assert pack([]) == []


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["dev_a", "dev_b"]),
        st.sampled_from(["api_calls", "tokens", "sms", "emails"]),
        st.integers(min_value=-3, max_value=3),  # days around a month boundary
        st.booleans(),
    ),
    max_size=400,
)


@settings(max_examples=150, deadline=None)
@given(EVENTS)
def test_chunks_never_exceed_the_transaction_limit_and_keep_order(
    spec: list[tuple[str, str, int, bool]],
) -> None:
    boundary = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
    events = [
        make(
            i,
            developer=dev,
            metric=metric,
            when=boundary + timedelta(days=shift),
            key=f"k{i}" if keyed else None,
        )
        for i, (dev, metric, shift, keyed) in enumerate(spec)
    ]
    chunks = pack(events)
    assert [e.index for chunk in chunks for e in chunk] == list(range(len(events)))
    assert all(chunk for chunk in chunks)
    assert all(transaction_cost(chunk) <= MAX_TRANSACTION_ITEMS for chunk in chunks)
    # greedy: a chunk was closed only because the next event did not fit
    for chunk, following in pairwise(chunks):
        assert transaction_cost([*chunk, following[0]]) > MAX_TRANSACTION_ITEMS
    # what a chunk commits is exactly its records plus its combined counters
    for chunk in chunks:
        assert transaction_cost(chunk) == len(chunk) + len(increments(chunk, NOW))


# ---- _increments -------------------------------------------------------------------------------------


def as_tuples(increments: list[CounterIncrement]) -> set[tuple[str, str, str, str, Decimal, int]]:
    return {(i.developer_id, i.scope, i.key, i.metric, i.quantity, i.events) for i in increments}


def test_increments_combine_events_on_the_same_counters() -> None:
    nov_26 = NOV_25 + timedelta(days=1)
    events = [
        make(0, quantity=Decimal("1.5"), key="a"),
        make(1, quantity=Decimal("2.25")),
        make(2, metric="tokens", quantity=1000),
        make(3, quantity=1, when=nov_26),
        make(4, quantity=Decimal("0.000000001"), developer="dev_bob"),
    ]
    assert as_tuples(increments(events, NOW)) == {
        ("dev_alice", "minute", MINUTE, "*", Decimal(4), 4),
        ("dev_bob", "minute", MINUTE, "*", Decimal(1), 1),
        ("dev_alice", "day", "2026-11-25", "api_calls", Decimal("3.75"), 2),
        ("dev_alice", "day", "2026-11-26", "api_calls", Decimal(1), 1),
        ("dev_alice", "month", "2026-11", "api_calls", Decimal("4.75"), 3),
        ("dev_alice", "day", "2026-11-25", "tokens", Decimal(1000), 1),
        ("dev_alice", "month", "2026-11", "tokens", Decimal(1000), 1),
        ("dev_bob", "day", "2026-11-25", "api_calls", Decimal("0.000000001"), 1),
        ("dev_bob", "month", "2026-11", "api_calls", Decimal("0.000000001"), 1),
    }
    assert len(increments(events, NOW)) == 9  # each counter item at most once per transaction


def test_increments_split_at_the_month_boundary() -> None:
    events = [
        make(0, when=datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC), quantity=2),
        make(1, when=datetime(2026, 12, 1, 0, 0, 0, tzinfo=UTC), quantity=3),
    ]
    assert as_tuples(increments(events, NOW)) == {
        ("dev_alice", "minute", MINUTE, "*", Decimal(2), 2),
        ("dev_alice", "day", "2026-11-30", "api_calls", Decimal(2), 1),
        ("dev_alice", "month", "2026-11", "api_calls", Decimal(2), 1),
        ("dev_alice", "day", "2026-12-01", "api_calls", Decimal(3), 1),
        ("dev_alice", "month", "2026-12", "api_calls", Decimal(3), 1),
    }


def test_increments_sum_exactly() -> None:
    events = [make(i, quantity=Decimal("0.1")) for i in range(10)]
    day = next(i for i in increments(events, NOW) if i.scope == "day")
    assert (day.quantity, day.events) == (Decimal("1.0"), 10)


def test_no_events_no_increments() -> None:
    assert increments([], NOW) == []


# ---- dimensions ---------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.booleans()), min_size=1, max_size=250))
def test_dimensioned_chunks_fit_whatever_their_combinations_turn_out_to_be(
    spec: list[tuple[int, bool]],
) -> None:
    """Packing counts a combination's counter per event and, per day, the count and "(other)":
    however many combinations turn out new or past the bound, a transaction stays in 100 items."""
    events = []
    for i, value in enumerate(spec):
        event = make(i, key=f"k{i}")
        event.dimensions = {"endpoint": f"/e{value}"}
        events.append(event)
    for chunk in pack(events):
        for absent, bound in ((set(), 1000), ({e.group_of(e.dimensions or {}) for e in chunk}, 3)):
            known = packing.Known(absent=absent, cardinality=bound)
            admitted, refused = packing.admit(chunk, known, MINUTE, in_catalog)
            assert refused == []
            groups = packing.group_increments(admitted, known)
            claims = packing.combination_claims(groups, bound)
            items = len(admitted) + len(increments(admitted, NOW, known)) + len(groups) + len(claims)
            assert items <= MAX_TRANSACTION_ITEMS
            # past the bound, "(other)": every event is counted under exactly one combination
            assert sum(g.events for g in groups) == len(admitted)
            if absent:  # every combination new: at most the bound of them, the rest "(other)"
                kept = [g for g in groups if "(other)" not in g.values.values()]
                assert len(kept) == min(bound, len({e.group_of(e.dimensions or {}) for e in chunk}))
                assert sum(c.combinations for c in claims) == len(kept)
