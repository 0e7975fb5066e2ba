"""Plan catalogs: data files of plans and the meters they need, stored by `plans seed`.

A catalog is loaded whole and checked before anything is written: every limited metric is
one of its meters, and none of them is a max or latest meter. Seeding creates the missing
meters and stores the plans that are not stored yet; it never changes a meter (a name keeps
its definition for good), so a stored meter that differs from the catalog's refuses the
whole seed, and a stored plan that differs is kept unless `--replace` is given.
"""

from __future__ import annotations

from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from usage_meter import jsonutil
from usage_meter.domain import accounts, meters
from usage_meter.models.accounts import MeterDefinition, Plan
from usage_meter.store import accounts as account_store
from usage_meter.store import meters as meter_store
from usage_meter_admin.common import CliError

CatalogName = Literal["default", "grantex", "glyphnet"]
CATALOGS: tuple[CatalogName, ...] = ("default", "grantex", "glyphnet")


class Catalog(BaseModel):
    """One catalog file: its meters and its plans (`source`: the seed document it follows)."""

    model_config = ConfigDict(extra="forbid")

    name: CatalogName
    description: str
    source: str | None = None
    meters: list[MeterDefinition] = Field(min_length=1)
    plans: list[Plan] = Field(min_length=1)

    @model_validator(mode="after")
    def _limits_fit_the_meters(self) -> Catalog:
        declared = {meter.name: meter for meter in self.meters}
        for plan in self.plans:
            for metric, allowance in plan.metrics.items():
                meter = declared.get(metric)
                if meter is None:
                    raise ValueError(
                        f"plan {plan.name} names {metric}, which is not one of the catalog's meters"
                    )
                if allowance.limit is not None and not meter.limitable:
                    raise ValueError(f"plan {plan.name} limits {metric}, a {meter.aggregation} meter")
        return self


class SeedReport(BaseModel):
    """What `plans seed` did: meters created or already there, plans stored, unchanged or kept."""

    catalog: CatalogName
    meters_created: list[str]
    meters_unchanged: list[str]
    plans_stored: list[str]
    plans_unchanged: list[str]
    plans_kept: list[str]


def load(name: CatalogName) -> Catalog:
    """The catalog shipped as `catalogs/<name>.json` in this package."""
    text = resources.files("usage_meter_admin").joinpath("catalogs", f"{name}.json").read_text()
    return Catalog.model_validate(jsonutil.loads(text))


def _conflicts(catalog: Catalog) -> tuple[list[MeterDefinition], list[str]]:
    """The catalog's meters still to create, and a description of each stored one that differs."""
    missing: list[MeterDefinition] = []
    conflicts: list[str] = []
    for wanted in catalog.meters:
        stored = meter_store.get_meter(wanted.name)
        if stored is None:
            missing.append(wanted)
        elif stored.status == "archived":
            conflicts.append(f"{wanted.name} is archived")
        elif stored.definition != wanted:
            conflicts.append(
                f"{wanted.name} is stored as {_summary(stored.definition)}, the catalog has {_summary(wanted)}"
            )
    return missing, conflicts


def _summary(meter: MeterDefinition) -> str:
    unique = f" of {meter.unique_by}" if meter.unique_by else ""
    by = f" by {','.join(meter.dimensions)}" if meter.dimensions else ""
    return f"{meter.aggregation}{unique}{by} ({meter.unit or '-'}: {meter.description or '-'})"


def seed(name: CatalogName, *, replace: bool = False) -> SeedReport:
    """Create the catalog's missing meters, then store its plans (see the module docstring)."""
    catalog = load(name)
    missing, conflicts = _conflicts(catalog)
    if conflicts:
        raise CliError(
            f"catalog {name} needs meters stored otherwise: {'; '.join(conflicts)} (nothing was written)"
        )
    stored = {plan.name: plan for plan in account_store.list_plans()}
    unchanged = [plan.name for plan in catalog.plans if stored.get(plan.name) == plan]
    kept = [plan.name for plan in catalog.plans if plan.name in stored and plan.name not in unchanged]
    to_store = [
        plan for plan in catalog.plans if plan.name not in unchanged and (replace or plan.name not in kept)
    ]
    for meter in missing:
        meters.create(meter)
    for plan in to_store:
        accounts.put_plan(plan)
    return SeedReport(
        catalog=name,
        meters_created=[meter.name for meter in missing],
        meters_unchanged=[meter.name for meter in catalog.meters if meter not in missing],
        plans_stored=[plan.name for plan in to_store],
        plans_unchanged=unchanged,
        plans_kept=[] if replace else kept,
    )
