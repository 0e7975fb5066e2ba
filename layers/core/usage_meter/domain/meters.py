"""Meters: how the events of one metric become usage, declared as data in the accounts table.

A meter's aggregation and uniqueBy never change, so usage already counted always means what
its meter says: a name is taken for good (archived or not), and a different definition needs
another name. Meters are created by the admin CLI (and the plan catalogs) and read by any key.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from usage_meter.domain import clock
from usage_meter.errors import Conflict, NotFound, ValidationFailed, json_message
from usage_meter.models.accounts import Meter, MeterDefinition, Plan
from usage_meter.models.timestamps import format_timestamp
from usage_meter.models.wire import MeterOut, MetersResponse
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
            (f"{'.'.join(map(str, e['loc']))}: " if e["loc"] else "")
            + json_message(e).removeprefix("Value error, ")
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
    """A plan may not limit a max or latest meter: a peak or a last value never runs out."""
    for metric, allowance in sorted(plan.metrics.items()):
        meter = meter_store.get_meter(metric) if allowance.limit is not None else None
        if meter is not None and not meter.limitable:
            raise ValidationFailed(
                f"plan {plan.name} puts a limit on {metric}, a {meter.aggregation} meter: "
                "max and latest meters take no limits",
                code="limit_not_allowed",
            )


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
    return MeterOut.model_validate(meter.model_dump(include=set(MeterOut.model_fields)))
