"""Accounts for a single tracked event: the container's copies, checked in its transaction.

A single event would otherwise read its developer's profile, its plan and its meter (three
round trips) before its transaction. Here they come from the container's copies, and the
transaction asserts with a ConditionCheck per copy used that the item is still as it was (its
`revision` unchanged, or still absent). A plan edited or assigned, a meter created or archived
since, cancels the transaction (nothing is written); the copies are dropped and the event is
judged again from fresh reads. So a change still applies to the very next request, and a
warm container tracks a single event in two round trips: the transaction, and the read of
the usage block.

A plan or meter is shared by many developers, and a ConditionCheck consumes write capacity:
checking the item itself would cap each plan and meter near one item's ~500 transactions/s.
So a plan or meter written with its revision stamps (keys.STAMP_COPIES copies of its revision,
written in the item's own transaction) is checked on the copy its developer picks, spreading
the checks over that many items. A copy of an item without stamps (written before them) is
checked on the item itself; an absent plan or meter on the stamp copy (a create writes it).
A plan or meter copy is kept at most MAX_STAMPED_AGE: a write that renews the item but not its
stamps (older code during a rolling deploy) applies within that time, not never.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from usage_meter.domain import clock
from usage_meter.models.accounts import Developer, Meter, Plan
from usage_meter.models.records import AccountCheck, AccountKind
from usage_meter.store import accounts as account_store
from usage_meter.store import dynamodb, keys
from usage_meter.store import meters as meter_store
from usage_meter.store.accounts import Revised

MAX_CACHED = 10_000
"""Copies a container keeps (developers, plans and meters together); the oldest goes first."""
MAX_STAMPED_AGE = timedelta(seconds=60)
"""How long a plan's or meter's copy is used before it is read again (see the module's note);
a developer's copy is checked on its own item, so it is kept until it is found stale."""

Slot = tuple[AccountKind, str]
Account = Developer | Plan | Meter
AccountT = TypeVar("AccountT", Developer, Plan, Meter)

_copies: dict[Slot, tuple[Revised[Account] | None, datetime]] = {}  # the copy, when it was read
dynamodb.on_reset(_copies.clear)


def _keep(slot: Slot, value: Revised[Account] | None) -> None:
    if slot not in _copies and len(_copies) >= MAX_CACHED:
        _copies.pop(next(iter(_copies)))
    _copies[slot] = (value, clock.now())


def _usable(slot: Slot) -> bool:
    kept = _copies.get(slot)
    return kept is not None and (slot[0] == "developer" or clock.now() - kept[1] < MAX_STAMPED_AGE)


class StaleAccounts(Exception):
    """A transaction's check found an account changed since the container copied it."""


class VerifiedAccounts:
    """The accounts one request takes from the container's copies; `checks` are what its
    transaction must assert. A copy missing is read (strongly consistent, as without the
    copies) and kept for the next request; a developer that does not exist is never kept (its
    404 needs no transaction to be checked by)."""

    def __init__(self) -> None:
        self._used: dict[Slot, AccountCheck] = {}
        self._developer_id = ""

    def _get(
        self, kind: AccountKind, name: str, read: Callable[[str], Revised[AccountT] | None]
    ) -> AccountT | None:
        slot = (kind, name)
        if _usable(slot):
            copy = _copies[slot][0]
            self._used[slot] = AccountCheck(
                kind=kind, name=name, revision=copy[1] if copy is not None else None, exists=copy is not None
            )
            return copy[0] if copy is not None else None  # type: ignore[return-value]  # kind says
        fresh = read(name)
        if fresh is not None or kind != "developer":
            _keep(slot, fresh)
        return fresh[0] if fresh is not None else None

    def _stamp(self, check: AccountCheck) -> int | None:
        """The stamp copy to check (None: the item itself): the developer's pick among the
        item's stamps, or among the stamps a create writes when the item is absent. Picked when
        the transaction is built: the meter may be looked up before the developer."""
        if check.kind == "developer":
            return None
        copies = keys.stamps_of(check.revision) if check.exists else keys.STAMP_COPIES
        return keys.stamp_copy(self._developer_id, copies) if copies else None

    def developer(self, developer_id: str) -> Developer | None:
        self._developer_id = developer_id
        return self._get("developer", developer_id, account_store.read_developer)

    def stored_plan(self, name: str) -> Plan | None:
        """The stored plan (None: none is stored, a default of that name may apply)."""
        return self._get("plan", name, account_store.read_plan)

    def meter(self, name: str) -> Meter | None:
        return self._get("meter", name, meter_store.read_meter)

    @property
    def used(self) -> bool:
        """Whether anything came from the copies (and is to be checked)."""
        return bool(self._used)

    @property
    def checks(self) -> list[AccountCheck]:
        return [check.model_copy(update={"stamp": self._stamp(check)}) for check in self._used.values()]

    def forget(self) -> None:
        """Drop the copies this request used (one of them is stale)."""
        for slot in self._used:
            _copies.pop(slot, None)
        self._used.clear()
