"""Meters: how the events of one metric become usage, declared as data in the accounts table.

A meter's aggregation and uniqueBy never change, so usage already counted always means what
its meter says: a name is taken for good (archived or not), and a different definition needs
another name. Meters are created by the admin CLI (and the plan catalogs) and read by any key.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from usage_meter.domain import clock
from usage_meter.domain.plans import DEFAULT_PLANS
from usage_meter.domain.verified import VerifiedAccounts
from usage_meter.errors import Conflict, NotFound, ValidationFailed, json_message
from usage_meter.models.accounts import Meter, MeterDefinition, Plan
from usage_meter.models.records import Counter
from usage_meter.models.timestamps import format_timestamp
from usage_meter.models.wire import Aggregation, MeterOut, MetersResponse
from usage_meter.store import accounts as account_store
from usage_meter.store import meters as meter_store

logger = Logger(child=True)

MAX_METERS = 1_000
"""The most meters a stack holds: GET /v1/meters answers all of them in one bounded answer."""


def definition(**fields: object) -> MeterDefinition:
    """A meter definition from loose input (the CLI's options), refused as one readable line."""
    try:
        return MeterDefinition.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "") + json_message(e)
            for e in exc.errors(include_url=False)
        )
        raise ValidationFailed(f"invalid meter: {problems}", code="invalid_meter") from exc


def _taken(name: str) -> Conflict:
    existing = meter_store.get_meter(name)
    if existing is not None and existing.status == "archived":
        why = "archived; a name is never reused: create the meter under a new name"
    else:
        why = (
            "a meter's aggregation and unique_by never change: archive it and create another under a new name"
        )
    return Conflict(f"meter {name} already exists ({why})", code="meter_exists")


def create(new: MeterDefinition) -> Meter:
    """Store a new meter; refuses a name any meter ever had, and more than MAX_METERS meters."""
    if meter_store.get_meter(new.name) is not None:
        raise _taken(new.name)
    if new.shards > 1:
        stored = {plan.name: plan for plan in account_store.list_plans()}
        refuse_shards_under_hard_limits(new, list(({p.name: p for p in DEFAULT_PLANS} | stored).values()))
    if len(meter_store.list_meters(MAX_METERS)) >= MAX_METERS:
        raise ValidationFailed(
            f"there are {MAX_METERS} meters already, the most a stack holds", code="too_many_meters"
        )
    meter = Meter(**new.model_dump(), created_at=format_timestamp(clock.now()))
    if not meter_store.put_new_meter(meter):  # created concurrently since the check
        raise _taken(new.name)
    logger.info("meter created", extra={"meter": meter.name, "aggregation": meter.aggregation})
    return meter


def refuse_unlimitable(plan: Plan) -> None:
    """A plan may not limit a max or latest meter: a peak or a last value never runs out; nor
    put a hard limit on a sharded meter: a hard limit holds on one counter item."""
    for metric, allowance in sorted(plan.metrics.items()):
        meter = meter_store.get_meter(metric) if allowance.limit is not None else None
        if meter is not None and not meter.limitable:
            raise ValidationFailed(
                f"plan {plan.name} puts a limit on {metric}, a {meter.aggregation} meter: "
                "max and latest meters take no limits",
                code="limit_not_allowed",
            )
        if meter is not None and meter.shards > 1 and allowance.enforcement == "hard":
            raise ValidationFailed(_hard_on_sharded(plan.name, metric), code="limit_not_allowed")


def _hard_on_sharded(plan: str, metric: str) -> str:
    return (
        f"plan {plan} puts a hard limit on {metric}, a sharded meter: a hard limit holds on one "
        "counter (make it soft, or use a meter without shards)"
    )


def refuse_shards_under_hard_limits(new: MeterDefinition, plans: list[Plan]) -> None:
    """A sharded meter may not be one a stored plan limits hard (see refuse_unlimitable)."""
    for plan in plans:
        allowance = plan.metrics.get(new.name)
        hard = allowance is not None and allowance.limit is not None and allowance.enforcement == "hard"
        if new.shards > 1 and hard:
            raise ValidationFailed(_hard_on_sharded(plan.name, new.name), code="limit_not_allowed")


def get(name: str) -> Meter:
    meter = meter_store.get_meter(name)
    if meter is None:
        raise NotFound(f"no meter {name}", code="meter_not_found")
    return meter


def archive(name: str) -> Meter:
    """Stop a meter taking events (its usage stays readable); archiving twice changes nothing."""
    if meter_store.archive_meter(name, format_timestamp(clock.now())):
        logger.info("meter archived", extra={"meter": name})
    return get(name)


def meters() -> list[Meter]:
    """Every meter (active and archived), sorted by name."""
    return sorted(meter_store.list_meters(MAX_METERS), key=lambda m: m.name)


def listing() -> MetersResponse:
    """GET /v1/meters: every meter as the wire shows it."""
    return MetersResponse(meters=[_out(m) for m in meters()])


def _out(meter: Meter) -> MeterOut:
    """The wire's fields of a meter (its dates stay in the accounts table and the CLI)."""
    shown = meter.model_dump(include=set(MeterOut.model_fields))
    return MeterOut.model_validate({**shown, "shards": meter.shards})  # stored only when above 1


# ---- what an event contributes to its meter ------------------------------------------------


class MeterBook:
    """The meters of one request's metrics, each read once (strongly consistent): a meter
    created or archived applies to the next request."""

    def __init__(self, verified: VerifiedAccounts | None = None) -> None:
        self._meters: dict[str, Meter | None] = {}
        self._verified = verified  # copies the transaction checks, instead of reads

    def __call__(self, metric: str) -> Meter | None:
        if metric not in self._meters:
            read = self._verified.meter if self._verified else meter_store.get_meter
            self._meters[metric] = read(metric)
        return self._meters[metric]


def _quantity_refused(code: str, message: str, kind: str) -> ValidationFailed:
    """A quantity that does not fit its meter, reported like a field error."""
    return ValidationFailed(
        f"quantity: {message}", code=code, details=[{"field": "quantity", "message": message, "type": kind}]
    )


def require_positive(sent: Decimal) -> None:
    """A quantity that must be greater than 0 (every meter's but a level's, whose changes are
    signed): 422 quantity_not_positive otherwise."""
    if sent <= 0:
        raise _quantity_refused("quantity_not_positive", "Input should be greater than 0", "greater_than")


def contribution(aggregation: Aggregation, sent: Decimal | None) -> Decimal:
    """What an event adds to its meter: 1 for count and unique_count (its quantity, optional,
    is ignored; a unique_count's 1 counts only where its value is new), the signed change for a
    level, else its quantity, which must be there and be positive."""
    if aggregation in ("count", "unique_count"):
        if sent is not None:
            require_positive(sent)
        return Decimal(1)
    if sent is None:
        raise _quantity_refused("quantity_required", f"Field required (for a {aggregation} meter)", "missing")
    if aggregation != "level":
        require_positive(sent)
    return sent


def unique_value(meter: Meter, metadata: dict[str, Any] | None) -> str:
    """The value a unique_count event is counted by: metadata[uniqueBy], a string."""
    value = (metadata or {}).get(meter.unique_by or "")
    if not isinstance(value, str) or not value:
        raise ValidationFailed(
            f"metadata.{meter.unique_by}: a {meter.name} event needs a non-empty string "
            f"metadata.{meter.unique_by} (the property its unique_count counts by)",
            code="unique_by_missing",
            details=[
                {"field": f"metadata.{meter.unique_by}", "message": "a non-empty string", "type": "missing"}
            ],
        )
    return value


Adder = Callable[[Decimal, Decimal], Decimal]


def combine(
    aggregation: Aggregation, so_far: tuple[Decimal, str] | None, counter: Counter, add: Adder = operator.add
) -> tuple[Decimal, str]:
    """Two windows' consumption as one, as the aggregation says: (consumption, latest key) of
    what was combined so far (None: nothing yet) and one more counter. The largest (max), the
    one with the later key (latest), else the two added with `add` (sum, count, a level's net
    change; the rollup adds exactly, at DynamoDB's 38 digits)."""
    consumed, latest_key = so_far if so_far is not None else (Decimal(0), "")
    key = counter.latest_key or ""
    if aggregation == "max":
        return (counter.consumed if so_far is None else max(consumed, counter.consumed)), latest_key
    if aggregation == "latest":
        return (counter.consumed, key) if key >= latest_key else (consumed, latest_key)
    return add(consumed, counter.consumed), latest_key


def refuse_unusable(metric: str, meter: Meter | None, undeclared: str) -> None:
    """An archived meter takes no events (meter_archived); with UndeclaredMetrics=reject, a
    metric with no meter takes none either (unknown_metric)."""
    if meter is not None and meter.status == "archived":
        raise ValidationFailed(
            f"meter {metric} is archived: it takes no new events (its usage stays readable)",
            code="meter_archived",
        )
    if meter is None and undeclared == "reject":
        raise ValidationFailed(
            f"no meter {metric}: this stack takes events only for declared meters (GET /v1/meters)",
            code="unknown_metric",
        )
