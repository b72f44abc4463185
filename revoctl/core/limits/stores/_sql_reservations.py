"""Reservations on SQL: a request's rules, budget and parallel slot in one transaction.

A reservation locks every row it touches before it reads any, always in the same order,
so concurrent reservations queue instead of deadlocking: the rules' rows
(``rate_limit_state``, sorted by rule and key, each by the store's upsert-lock), then the
account's budget counter for the period (``limit_budgets``), then the account's slot row
(``limit_slots``), after which it counts the account's live leases (``limit_leases``).
Every part is then decided on the state as found and the database server's clock read
after the last lock; only when every part allows are the rows written and the lease
inserted. A settlement locks in the same order; freeing a slot deletes its lease row.

A lease runs out at ``expires_at``; `renew` extends every lease of one holder (the
process, `revoctl.core.limits._leases.lease_holder`) that it names and that is still
live, in one ``UPDATE`` whose list of leases is one JSON parameter.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from revoctl.core.db._sql import server_clock, table, upsert
from revoctl.core.limits._algorithms import Algorithm, State
from revoctl.core.limits._leases import lease_holder
from revoctl.core.limits.base import Op, RateLimitResult
from revoctl.core.limits.reservations import Reserved

if TYPE_CHECKING:
    from sqlalchemy import Executable, Select
    from sqlalchemy.ext.asyncio import AsyncSession

    from revoctl.core.limits.reservations import (
        BudgetCharge,
        BudgetSettlement,
        HeldLease,
        Reservation,
        RuleCharge,
        Settlement,
        SlotCharge,
    )
    from revoctl.core.limits.settings import RateLimitRule

_Key = tuple[str, str]
"""A rule's name and a key: one row of ``rate_limit_state``."""


@dataclass(frozen=True)
class RuleRows:
    """The store's statements on ``rate_limit_state`` (see `SqlLimitStore`)."""

    lock: Executable
    write: Executable
    algorithm: Callable[[RateLimitRule], Algorithm]


@dataclass(frozen=True)
class _Statements:
    lock_budget: Executable
    """Upsert that locks an account's counter for a period; returns (spent, expires_at, now)."""
    write_budget: Executable
    read_budget: Executable
    lock_slots: Executable
    """Upsert that locks an account's slot row; returns now."""
    count_leases: Executable
    """The account's live leases other than ``lease``."""
    take_lease: Executable
    free_lease: Executable
    renew: Executable
    sweep: tuple[Executable, ...]


@functools.cache
def _statements(backend: str) -> _Statements:
    from sqlalchemy import String, bindparam, cast, delete, func, literal_column, select, update
    from sqlalchemy.dialects.postgresql import JSON

    from revoctl.core.db.models import LimitBudget, LimitLease, LimitSlotAccount

    budgets, slots, leases = table(LimitBudget), table(LimitSlotAccount), table(LimitLease)
    b, s, x = budgets.c, slots.c, leases.c
    now = server_clock(backend)
    lock_budget = upsert(backend, budgets).on_conflict_do_update(
        index_elements=[b.account, b.period], set_={"expires_at": b.expires_at}
    )
    lock_slots = upsert(backend, slots)
    take = upsert(backend, leases)
    if backend == "sqlite":
        each = func.json_each(bindparam("leases"))
        listed: Select[Any] = select(literal_column("value")).select_from(each)
    else:
        as_json = cast(bindparam("leases", type_=String), JSON)
        listed = select(func.json_array_elements_text(as_json))
    return _Statements(
        lock_budget=lock_budget.returning(b.spent, b.expires_at, now),
        write_budget=update(budgets).where(
            b.account == bindparam("key_account"), b.period == bindparam("key_period")
        ),
        read_budget=select(b.spent, b.expires_at, now).where(
            b.account == bindparam("account"), b.period == bindparam("period")
        ),
        lock_slots=lock_slots.on_conflict_do_update(
            index_elements=[s.account], set_={"cap": lock_slots.excluded.cap}
        ).returning(now),
        count_leases=select(func.count())
        .select_from(leases)
        .where(
            x.account == bindparam("account"),
            x.lease != bindparam("lease"),
            x.expires_at > bindparam("now"),
        ),
        take_lease=take.on_conflict_do_update(
            index_elements=[x.lease],
            set_={
                "account": take.excluded.account,
                "holder": take.excluded.holder,
                "expires_at": take.excluded.expires_at,
            },
        ),
        free_lease=delete(leases).where(
            x.lease == bindparam("lease"), x.account == bindparam("account")
        ),
        renew=update(leases)
        .where(x.holder == bindparam("key_holder"), x.lease.in_(listed), x.expires_at > now)
        .values(expires_at=now + bindparam("seconds")),
        sweep=(
            delete(budgets).where(b.expires_at <= now),
            delete(leases).where(x.expires_at <= now),
            delete(slots).where(s.account.not_in(select(x.account))),
        ),
    )


class SqlReservations:
    """Reservations, settlements, renewals and budget reads, each run inside a transaction
    the store opens; ``rows`` are its statements on the rules' rows."""

    def __init__(self, backend: str, rows: RuleRows) -> None:
        self.backend = backend
        self.rows = rows

    async def reserve(
        self, session: AsyncSession, reservation: Reservation, lease_seconds: float
    ) -> Reserved:
        sql = _statements(self.backend)
        states, now = await self._lock_rules(session, reservation.rules)
        budget, slot = reservation.budget, reservation.slot
        found = 0
        if budget is not None:
            found, now = await self._lock_budget(session, budget.account, budget.period)
        others = 0
        if slot is not None:
            others, now = await self._lock_slots(session, slot)
        results, writes = self._check(reservation.rules, states, now, "check")
        reserved = Reserved(results, spent=found, in_flight=others)
        if budget is not None:
            reserved.budget_allowed = found + budget.amount <= budget.limit
        if slot is not None:
            reserved.slot_allowed = others < slot.cap
        if not reserved.allowed:  # nothing is taken: every rule as found
            reserved.rules = self._check(reservation.rules, states, now, "peek")[0]
            return reserved
        await self._write_rules(session, writes, now)
        if budget is not None:
            reserved.spent = found + budget.amount
            await self._write_budget(session, budget, reserved.spent, now)
        if slot is not None:
            reserved.in_flight = others + 1
            lease = {"lease": slot.lease, "account": slot.account}
            holder = {"holder": lease_holder(slot.lease), "expires_at": now + lease_seconds}
            await session.execute(sql.take_lease, lease | holder)
        return reserved

    async def settle(self, session: AsyncSession, settlement: Settlement) -> list[RateLimitResult]:
        sql = _statements(self.backend)
        states, now = await self._lock_rules(session, settlement.refunds)
        budget = settlement.budget
        if budget is not None:
            found, now = await self._lock_budget(session, budget.account, budget.period)
            value = max(0, found + budget.delta)
            await self._write_budget(session, budget, value, now)
        results, writes = self._check(settlement.refunds, states, now, "refund")
        await self._write_rules(session, writes, now)
        slot = settlement.slot
        if slot is not None:
            await session.execute(sql.free_lease, {"lease": slot.lease, "account": slot.account})
        return results

    async def renew(
        self, session: AsyncSession, held: Sequence[HeldLease], lease_seconds: float
    ) -> None:
        by_holder: dict[str, list[str]] = {}
        for lease in held:
            by_holder.setdefault(lease_holder(lease.lease), []).append(lease.lease)
        renew = _statements(self.backend).renew
        for holder, leases in by_holder.items():
            names = {"key_holder": holder, "leases": json.dumps(leases), "seconds": lease_seconds}
            await session.execute(renew, names)

    async def spent(self, session: AsyncSession, account: str, period: int) -> int:
        names = {"account": account, "period": period}
        row = (await session.execute(_statements(self.backend).read_budget, names)).first()
        return int(row[0]) if row is not None and row[1] > row[2] else 0

    async def sweep(self, session: AsyncSession) -> None:
        """Delete the counters and leases that ran out, and slot rows without leases."""
        for statement in _statements(self.backend).sweep:
            await session.execute(statement)

    # ------------------------------------------------------------------ parts

    async def _lock_rules(
        self, session: AsyncSession, charges: Sequence[RuleCharge]
    ) -> tuple[dict[_Key, State | None], float]:
        """Lock the charged rows, sorted by (rule, key); their states and the clock."""
        rules = {(c.rule.name, c.key): c.rule for c in charges}
        states: dict[_Key, State | None] = {}
        now = 0.0
        for (name, key), rule in sorted(rules.items(), key=lambda item: item[0]):
            algorithm = rule.algorithm.value
            names = {"rule": name, "key": key, "algorithm": algorithm}
            row = (
                await session.execute(self.rows.lock, names | {"state": None, "expires_at": 0.0})
            ).one()
            stored_algorithm, stored, now = row[0], row[1], float(row[2])
            fits = stored is not None and stored_algorithm == algorithm
            states[name, key] = tuple(json.loads(stored)) if fits else None
        return states, now

    def _check(
        self,
        charges: Sequence[RuleCharge],
        states: dict[_Key, State | None],
        now: float,
        op: Op,
    ) -> tuple[list[RateLimitResult], dict[_Key, tuple[RateLimitRule, State, float]]]:
        """Each charge's result in order, each on the state the earlier ones left (a peek
        on the state as found), and the rows to write."""
        pending = dict(states)
        writes: dict[_Key, tuple[RateLimitRule, State, float]] = {}
        results = []
        for charge in charges:
            where = (charge.rule.name, charge.key)
            new, result = self.rows.algorithm(charge.rule).apply(
                pending[where] if op != "peek" else states[where], now, op, charge.weight
            )
            if new is not None:
                pending[where] = new
                writes[where] = (charge.rule, new, result.reset_after)
            results.append(result)
        return results, writes

    async def _write_rules(
        self,
        session: AsyncSession,
        writes: dict[_Key, tuple[RateLimitRule, State, float]],
        now: float,
    ) -> None:
        for (name, key), (rule, new, reset) in sorted(writes.items(), key=lambda item: item[0]):
            values = {
                "algorithm": rule.algorithm.value,
                "state": json.dumps(new),
                "expires_at": now + reset,
            }
            await session.execute(self.rows.write, values | {"key_rule": name, "key_key": key})

    async def _lock_budget(
        self, session: AsyncSession, account: str, period: int
    ) -> tuple[int, float]:
        """Lock ``account``'s counter for ``period``: (its live value, the clock)."""
        names = {"account": account, "period": period, "spent": 0, "expires_at": 0.0}
        row = (await session.execute(_statements(self.backend).lock_budget, names)).one()
        now = float(row[2])
        return (int(row[0]) if row[1] > now else 0), now

    async def _write_budget(
        self,
        session: AsyncSession,
        budget: BudgetCharge | BudgetSettlement,
        value: int,
        now: float,
    ) -> None:
        names = {"key_account": budget.account, "key_period": budget.period}
        values = {"spent": value, "expires_at": now + budget.keep_seconds}
        await session.execute(_statements(self.backend).write_budget, names | values)

    async def _lock_slots(self, session: AsyncSession, slot: SlotCharge) -> tuple[int, float]:
        """Lock the account's slot row: (its live leases other than this one, the clock)."""
        sql = _statements(self.backend)
        now = float(
            (
                await session.execute(sql.lock_slots, {"account": slot.account, "cap": slot.cap})
            ).scalar_one()
        )
        names = {"account": slot.account, "lease": slot.lease, "now": now}
        return int((await session.execute(sql.count_leases, names)).scalar_one()), now
