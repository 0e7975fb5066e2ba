"""Every key of every table, in one place.

UsageTable (pk, sk strings):
    pk = "DEV#<developerId>"
    sk = "D#<YYYY-MM-DD>#<metric>"   day counter; carries activeDay = "<day>#<shard>" (ActivityIndex)
    sk = "M#<YYYY-MM>#<metric>"      billing-period (calendar month) counter
    sk = "R#<YYYY-MM-DDTHH:MM>#*"    events recorded in one minute (rate reporting; TTL-deleted);
                                     without a stated rate, spread over MINUTE_SHARDS shards
    sk = "L#current#<metric>"        a level meter's running level (never resets); its day and
                                     month counters hold the level's net change in them
    sk = "U#<D|M>#<window>#<metric>#<digest>"  a value a unique_count meter has seen in a day or
                                     month (digest: sha256 of the value, 32 hex); TTL-deleted
    sk = "G#<metric>#<YYYY-MM-DD>#<digest>"  a dimensioned meter's day counter of one combination
                                     of dimension values (held in `dimensions`; digest: sha256 of
                                     them, 32 hex); a month of one meter is one range
    sk = "C#<metric>#<YYYY-MM-DD>"   the combinations a dimensioned meter has in a day (at most
                                     the cardinality bound; "(other)" is not counted)
    sk = "METRIC#<metric>"           the developer's metric catalog: a metric its plan does not declare
    sk = "METRICS"                   the catalog's size (at most 100: too_many_metrics beyond)
    sk = "S#<YYYY-MM>#<metric>"      month summary written by the rollup (SET, never ADD): the sum
                                     of the month's day counters (consumed, events, days with
                                     usage), closed (the month has ended), rolledUpAt
    sk = "X#<YYYY-MM>#<metric>"      the period's first hard-limit refusal of a metric (put once by
                                     the track path; the stream turns it into usage.limit.reached)
    sk = "A#<YYYY-MM>#<metric>#<what>"  an alert's claim: one per developer, meter, period and
                                     threshold (<what>: the percentage, "limit" or "closed"),
                                     with the event it publishes; TTL-deleted after the window
    pk = "HOOK#<webhookId>", sk = "E#<eventId>"  an event's delivery to one endpoint (its lease,
                                     attempts, when delivered); TTL-deleted after 30 days
    pk = "HOOK#<webhookId>", sk = "T#<attemptedAt>#<eventId>"  one recorded delivery attempt
IdempotencyTable: pk = "<developerId>#<idempotencyKey>" (developer ids never contain "#").
    logPk = "<developerId>#<shard>"   EventLogIndex's partition: one of EVENT_LOG_SHARDS per
                                      developer, picked by a hash of the idempotency key
    logSk = "<eventTime>#<idempotencyKey>"  its sort key: the log's order (eventTime is
                                      fixed-width UTC, so text order is time order)
AccountsTable:
    pk = "DEV#<developerId>", sk = "PROFILE"       developer profile (kind = "developer")
    pk = "DEV#<developerId>", sk = "KEY#<keyId>"   a key as its developer lists it (no plaintext)
    pk = "KEY#<sha256(key)>", sk = "KEY"           the authorizer's lookup item
    pk = "PLAN#<name>",       sk = "PLAN"          a plan (kind = "plan")
    pk = "METER#<metric>",    sk = "METER"         a meter definition (kind = "meter")
    pk = "PLAN#<name>" or "METER#<metric>", sk = "STAMP#<k>"   one of STAMP_COPIES copies of
                                                   the plan's or meter's revision (no kind),
                                                   written in the same transaction as the item
    pk = "WEBHOOK#<id>",      sk = "WEBHOOK"       a webhook endpoint (kind = "webhook"; its salt,
                                                   never its secret)
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from usage_meter.models.records import CounterScope

DEVELOPER_PREFIX = "DEV#"
PROFILE_SK = "PROFILE"
KEY_SK = "KEY"
KEY_LISTING_PREFIX = "KEY#"
PLAN_SK = "PLAN"
METER_SK = "METER"
ACTIVITY_SHARDS = 8
_SCOPE_PREFIX: dict[CounterScope, str] = {"day": "D", "month": "M", "minute": "R", "level": "L"}
MINUTE_FORMAT = "%Y-%m-%dT%H:%M"
CATALOG_PREFIX = "METRIC#"
CATALOG_SIZE_SK = "METRICS"
STAMP_COPIES = 16
"""Revision stamps per plan and per meter: a warm single event checks the one its developer
picks, so the checks of everyone on a plan (or using a meter) spread over this many items."""
STAMPED = "s"
MINUTE_SHARDS = 16
"""Items a developer's minute counter spreads over when its plan states no per-minute rate (a
stated rate is read and enforced on one item): a transaction adds to the one its spread picks."""


def developer_pk(developer_id: str) -> str:
    return f"{DEVELOPER_PREFIX}{developer_id}"


def developer_of_pk(pk: str) -> str:
    return pk.removeprefix(DEVELOPER_PREFIX)


def counter_sk(scope: CounterScope, key: str, metric: str, shard: int = 0) -> str:
    """A counter's item; a sharded meter's shard n > 0 is `<counter>#<n>`, inside its counter's
    ranges (metric names hold no `#`), so every read that finds the counter finds its shards."""
    base = f"{_SCOPE_PREFIX[scope]}#{key}#{metric}"
    return base if shard == 0 else f"{base}#{shard}"


def shard_range(scope: CounterScope, key: str, metric: str) -> tuple[str, str]:
    """The sk range of one counter and all its shards."""
    base = counter_sk(scope, key, metric)
    return base, f"{base}#~"


def spread_of(text: str) -> int:
    """A stable, evenly spread number for a key (the first 32 bits of its sha256)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def shard_of(idempotency_key: str, shards: int) -> int:
    """The shard a key picks (stable, spread): every send of it adds to the same item."""
    return spread_of(idempotency_key) % shards


def stamp_sk(copy: int) -> str:
    return f"STAMP#{copy:02d}"


def stamp_copy(developer_id: str, copies: int) -> int:
    """The stamp copy a developer's events check (stable, spread)."""
    return shard_of(developer_id, copies)


def stamped_revision(revision_id: str) -> str:
    """The revision of an item whose STAMP_COPIES stamps are written with it (the count is in the
    text, so a revision written by older code, or with another count, is never read as stamped)."""
    return f"{STAMP_COPIES}{STAMPED}{revision_id}"


def stamps_of(revision: str | None) -> int:
    """How many stamps hold `revision` (0: none; the item itself must be checked)."""
    count, sep, _ = (revision or "").partition(STAMPED)
    return int(count) if sep and count.isdigit() and 0 < int(count) < 100 else 0


def minute_key(moment: datetime) -> str:
    """The minute a rate counter covers (UTC, to the minute)."""
    return moment.strftime(MINUTE_FORMAT)


def activity_shard(developer_id: str) -> int:
    """Which of the ActivityIndex shards of a day a developer is listed under (stable, spread)."""
    return shard_of(developer_id, ACTIVITY_SHARDS)


def activity_key(day: str, developer_id: str) -> str:
    return f"{day}#{activity_shard(developer_id)}"


def activity_shard_key(day: str, shard: int) -> str:
    return f"{day}#{shard}"


def idempotency_pk(developer_id: str, idempotency_key: str) -> str:
    return f"{developer_id}#{idempotency_key}"


def key_lookup_pk(key_hash: str) -> str:
    return f"{KEY_LISTING_PREFIX}{key_hash}"


def key_listing_sk(key_id: str) -> str:
    return f"{KEY_LISTING_PREFIX}{key_id}"


def plan_pk(name: str) -> str:
    return f"PLAN#{name}"


def meter_pk(metric: str) -> str:
    return f"METER#{metric}"


def summary_sk(month: str, metric: str) -> str:
    return f"S#{month}#{metric}"


def _spanning(prefix: str, first: str, last: str) -> tuple[str, str]:
    """The sk range of the items `<prefix><window>#...` whose window runs from `first` to `last`
    (inclusive): each window's items follow `<window>#`, and `~` sorts after all they hold."""
    return f"{prefix}{first}#", f"{prefix}{last}#~"


def summary_range(month: str) -> tuple[str, str]:
    """The sk range holding every metric's summary of one month."""
    return _spanning("S#", month, month)


def counter_range(scope: CounterScope, first: str, last: str) -> tuple[str, str]:
    """The sk range holding every metric's counters from `first` to `last` (inclusive)."""
    return _spanning(f"{_SCOPE_PREFIX[scope]}#", first, last)


def marker_sk(scope: CounterScope, window: str, metric: str, digest: str) -> str:
    """A unique_count meter's record of one value seen in one day or month."""
    return f"U#{_SCOPE_PREFIX[scope]}#{window}#{metric}#{digest}"


def marker_range(scope: CounterScope, first: str, last: str) -> tuple[str, str]:
    """The sk range holding every unique_count marker of the windows `first` to `last`."""
    return _spanning(f"U#{_SCOPE_PREFIX[scope]}#", first, last)


def group_sk(metric: str, day: str, digest: str) -> str:
    return f"G#{metric}#{day}#{digest}"


def group_range(metric: str, first_day: str, last_day: str) -> tuple[str, str]:
    """The sk range holding every combination's day counters of one meter, first to last day."""
    return _spanning(f"G#{metric}#", first_day, last_day)


def combinations_sk(metric: str, day: str) -> str:
    return f"C#{metric}#{day}"


def catalog_sk(metric: str) -> str:
    return f"{CATALOG_PREFIX}{metric}"


def catalog_range() -> tuple[str, str]:
    """The sk range holding every entry of a developer's metric catalog (not its size item)."""
    return CATALOG_PREFIX, f"{CATALOG_PREFIX}~"


def scope_of_sk(sk: str) -> CounterScope:
    return next(scope for scope, prefix in _SCOPE_PREFIX.items() if sk.startswith(f"{prefix}#"))


WEBHOOK_SK = "WEBHOOK"
LIMIT_CLAIM = "limit"
CLOSED_CLAIM = "closed"


def refusal_sk(month: str, metric: str) -> str:
    return f"X#{month}#{metric}"


def claim_sk(period: str, metric: str, what: str) -> str:
    """An alert's claim: `what` is a threshold percentage, LIMIT_CLAIM or CLOSED_CLAIM."""
    return f"A#{period}#{metric}#{what}"


def webhook_pk(webhook_id: str) -> str:
    return f"WEBHOOK#{webhook_id}"


def hook_pk(webhook_id: str) -> str:
    return f"HOOK#{webhook_id}"


def delivery_sk(event_id: str) -> str:
    return f"E#{event_id}"


def attempt_sk(attempted_at: str, event_id: str) -> str:
    return f"T#{attempted_at}#{event_id}"


def attempt_range() -> tuple[str, str]:
    return "T#", "T#~"


EVENT_LOG_SHARDS = 16
"""Partitions of one developer's event log in EventLogIndex: a busy developer's records spread
over 16 index partitions instead of one hot one; a page of the log merges the 16, newest first."""


def event_log_shard(idempotency_key: str) -> int:
    """Which of the developer's log partitions an event is listed under (stable, spread)."""
    return int(hashlib.sha256(idempotency_key.encode()).hexdigest()[:8], 16) % EVENT_LOG_SHARDS


def event_log_pk(developer_id: str, shard: int) -> str:
    return f"{developer_id}#{shard}"


def event_log_sk(event_time: str, idempotency_key: str) -> str:
    return f"{event_time}#{idempotency_key}"


def event_log_range(first_time: str, last_time: str) -> tuple[str, str]:
    """The logSk range of the events stamped from `first_time` to `last_time` inclusive ("$"
    sorts right after "#", so every key of `last_time` is inside)."""
    return f"{first_time}#", f"{last_time}$"


def event_log_day(day: str) -> tuple[str, str]:
    """The logSk range of one UTC day's events."""
    return f"{day}T", f"{day}T~"
