"""The event log: a developer's recorded events, newest first, with their corrections.

A page merges the developer's 16 log shards (see store/eventlog.py): each shard gives its
newest matching records below the cursor (about twice its share of a page), and the page takes
the newest `limit` of them, but never past the point where a shard stopped reading (so nothing
is skipped; a page may then hold fewer than `limit` events, and `nextCursor` goes on). The cursor is the
position reached, the log's sort key ("<eventTime>#<key>"), with a digest of the developer and
the filters it was made for: a cursor only continues the listing it came from (another
developer's or other filters' is 400 invalid_cursor), and whatever it holds, the listing reads
only the caller's developer's partitions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import UTC, datetime

from usage_meter import jsonutil
from usage_meter.domain.identity import DeveloperResolver
from usage_meter.errors import UsageMeterError, ValidationFailed
from usage_meter.models.records import IdempotencyRecord
from usage_meter.models.timestamps import format_timestamp
from usage_meter.models.wire import EventOut, EventsResponse, RevisionOut
from usage_meter.store import eventlog as log_store
from usage_meter.store import keys

DEFAULT_LIMIT = 50


class InvalidCursor(UsageMeterError):
    status = 400
    code = "invalid_cursor"


def event_out(record: IdempotencyRecord) -> EventOut:
    """A record as the log shows it."""
    return EventOut(
        idempotency_key=record.idempotency_key,
        metric=record.metric,
        quantity=record.quantity,
        timestamp=record.event_time,
        recorded_at=record.recorded_at,
        status=record.status,
        metadata=record.metadata,
        revision=record.revision,
        revisions=[RevisionOut.model_validate(r.model_dump()) for r in record.revisions],
    )


def _scope(developer_id: str, filters: tuple[str | None, ...]) -> str:
    return hashlib.sha256(jsonutil.dumps([developer_id, *filters]).encode()).hexdigest()[:16]


def encode_cursor(position: str, scope: str) -> str:
    return base64.urlsafe_b64encode(jsonutil.dumps({"p": position, "s": scope}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, scope: str) -> str:
    """The position a cursor holds, if it was made for this listing; else 400 invalid_cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        held = jsonutil.loads(raw.decode())
        position, made_for = held["p"], held["s"]
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
        raise InvalidCursor("the cursor is not one this listing gave") from exc
    if made_for != scope or not isinstance(position, str):
        raise InvalidCursor("the cursor belongs to another listing (other developer or filters)")
    return position


def _utc(moment: datetime | None) -> datetime | None:
    """A bound without an offset is UTC (so naive and aware bounds compare)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def list_events(
    resolve: DeveloperResolver,
    *,
    developer_id: str | None,
    metric: str | None = None,
    status: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> EventsResponse:
    """One page of a developer's log, newest first (see the module docstring)."""
    developer = resolve(developer_id)
    start, end = _utc(start), _utc(end)
    if start is not None and end is not None and start > end:
        raise ValidationFailed("from is after to", code="invalid_range")
    first = format_timestamp(start) if start else "0"
    last = format_timestamp(end) if end else "9"
    low, high = keys.event_log_range(first, last)
    scope = _scope(developer, (metric, status, first, last))
    if cursor is not None:
        high = min(high, decode_cursor(cursor, scope))
    # keys spread evenly over the shards, so each holds about 1/16 of any time range: asking
    # each for twice its share (not `limit`) reads ~2x a page instead of 16x; a shard that had
    # more stops at its frontier, and the page ends there (possibly short: follow nextCursor)
    per_shard = min(limit, 2 * -(-limit // keys.EVENT_LOG_SHARDS) + 4)
    pages = [
        log_store.shard_page(developer, shard, low, high, per_shard, metric, status)
        for shard in range(keys.EVENT_LOG_SHARDS)
    ]
    # a shard that stopped early has read down to its frontier only: the page ends there
    floor = max((p.frontier for p in pages if p.frontier is not None), default="")
    merged = sorted(
        ((keys.event_log_sk(r.event_time, r.idempotency_key), r) for p in pages for r in p.records),
        key=lambda pair: pair[0],
        reverse=True,
    )
    # the cursor's own event was on the page before (the range is inclusive)
    below = [(sk, r) for sk, r in merged if floor <= sk < high]
    page = below[:limit]
    more = len(page) == limit and (len(below) > limit or bool(floor))
    position = page[-1][0] if more else (floor or None)
    return EventsResponse(
        events=[event_out(r) for _, r in page],
        next_cursor=encode_cursor(position, scope) if position else None,
    )
