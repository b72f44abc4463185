"""`MemoryLimitStore`: counters in this process's memory, for one process only.

Every operation runs to completion without awaiting anything, so on one event loop
each decision is atomic without a lock. Memory stays bounded without a background
thread: a key whose state has run out counts as new when it is next touched (lazy
expiry), and each new key makes the sweep look at the next two keys of a round
through the rule's keys and drop those that have run out (a bounded sweep), so keys
nobody touches again go too.

Reservations (`reserve_now`) decide every part on the state as found and write only when
every part allows: the rules' checks (each as its own check would answer), the budget
counter of an account's period (whole nano-units, kept ``keep_seconds``) and the
account's parallel slots, leases that run out by the store's clock unless renewed. An
account's leases are kept in the order they run out (taken or renewed last, last), so
dropping those that ran out looks only at the front.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING, Any

from revoctl.core.limits._algorithms import Algorithm, State, algorithm_for
from revoctl.core.limits.base import Op, RateLimitResult
from revoctl.core.limits.reservations import Reserved
from revoctl.core.limits.settings import RateLimitRule

if TYPE_CHECKING:
    from collections.abc import Sequence

    from revoctl.core.limits.reservations import (
        BudgetCharge,
        HeldLease,
        Reservation,
        Settlement,
        SlotCharge,
    )

_Entry = tuple[State, float]
"""A key's state and when it runs out (wall clock)."""
_Counter = tuple[int, float]
"""A budget counter (nano-units) and when it runs out (wall clock)."""
_Write = tuple["_Table", str, State, float]
"""A rule's new state for a key, and the seconds until it is full again."""

SWEEP_PER_NEW_KEY = 2
"""Keys the sweep examines each time a key is added: more than one, so keys that ran
out are dropped faster than new ones arrive, and memory follows the live keys."""


class _Table:
    """One rule's keys, with the algorithm they were counted by."""

    __slots__ = ("algorithm", "entries", "rule")

    def __init__(self, rule: RateLimitRule) -> None:
        self.rule = rule
        self.algorithm: Algorithm = algorithm_for(rule)
        self.entries: dict[str, _Entry] = {}


class MemoryLimitStore:
    """Per-key state in one dict per rule, which doubles as the sweep's round; ``clock`` is
    wall-clock seconds (windows are aligned to the epoch), injectable for tests and
    simulations."""

    kind = "memory"
    remote = False

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tables: dict[str, _Table] = {}
        self._budgets: dict[tuple[str, int], _Counter] = {}
        self._slots: dict[str, OrderedDict[str, float]] = {}
        """Per account, its leases and when each runs out, soonest first."""

    def describe(self) -> str:
        return "process memory"

    def __len__(self) -> int:
        return sum(len(table.entries) for table in self._tables.values())

    def _table(self, rule: RateLimitRule) -> _Table:
        """The rule's table; a rule of that name with other numbers starts afresh."""
        table = self._tables.get(rule.name)
        if table is not None and table.rule is rule:
            return table
        if table is None or table.rule != rule:
            table = self._tables[rule.name] = _Table(rule)
        table.rule = rule  # equal numbers: the next lookup is by identity
        return table

    def apply_now(self, rule: RateLimitRule, key: str, op: Op, weight: int) -> RateLimitResult:
        """`apply`, synchronously: the whole decision, with nothing awaited."""
        now = self._clock()
        table = self._tables.get(rule.name)
        if table is None or table.rule is not rule:
            table = self._table(rule)
        entries = table.entries
        entry = entries.get(key)
        state = entry[0] if entry is not None and entry[1] > now else None
        new, result = table.algorithm.apply(state, now, op, weight)
        if new is not None:
            reset = result[4]
            if reset > 0:
                if entry is None:  # only a new key makes the dict grow: sweep then
                    self._sweep(entries, now)
                entries[key] = (new, now + reset)
            elif entry is not None:
                del entries[key]  # full again: the same as no state
        return result

    @staticmethod
    def _sweep(entries: dict[Any, tuple[Any, float]], now: float) -> None:
        """Look at the keys at the front of the round: drop those run out, send the rest to
        the back, so that the round passes every key in turn."""
        for key in list(islice(entries, SWEEP_PER_NEW_KEY)):
            entry = entries.pop(key)
            if entry[1] > now:
                entries[key] = entry

    async def apply(self, rule: RateLimitRule, key: str, op: Op, weight: int) -> RateLimitResult:
        return self.apply_now(rule, key, op, weight)

    async def keys(self, rule: RateLimitRule) -> list[str]:
        now = self._clock()
        return [key for key, (_, expires) in self._table(rule).entries.items() if expires > now]

    async def reset(self, rule: RateLimitRule, key: str | None) -> int:
        entries = self._table(rule).entries
        if key is None:
            removed = len(entries)
            entries.clear()
            return removed
        return 1 if entries.pop(key, None) is not None else 0

    # ------------------------------------------------------------------ reservations

    def reserve_now(self, reservation: Reservation, lease_seconds: float) -> Reserved:
        """`reserve`, synchronously: every part decided on the state as found, written only
        when every part allows."""
        now = self._clock()
        results, writes = self._check_rules(reservation, now)
        allowed = all(result.allowed for result in results)
        reserved = Reserved(results)
        budget, slot = reservation.budget, reservation.slot
        found = 0
        if budget is not None:
            found = self._counter(budget.account, budget.period, now)
            reserved.budget_allowed = found + budget.amount <= budget.limit
            reserved.spent = found
            allowed = allowed and reserved.budget_allowed
        leases: OrderedDict[str, float] = OrderedDict()
        if slot is not None:
            leases = self._leases(slot.account, now)
            reserved.slot_allowed = slot.lease in leases or len(leases) < slot.cap
            reserved.in_flight = len(leases)
            allowed = allowed and reserved.slot_allowed
        if not allowed:  # nothing is taken: every rule as found
            reserved.rules = self._found(reservation, now)
            return reserved
        for table, key, new, reset in writes:
            self._write(table, key, new, reset, now)
        if budget is not None:
            reserved.spent = self._charge(budget, found, now)
        if slot is not None:
            self._take(slot, leases, now + lease_seconds)
            reserved.in_flight = len(leases)
        return reserved

    def _check_rules(
        self, reservation: Reservation, now: float
    ) -> tuple[list[RateLimitResult], list[_Write]]:
        """Each rule's check, on the state the reservation's earlier charges would leave."""
        results: list[RateLimitResult] = []
        writes: list[_Write] = []
        pending: dict[tuple[str, str], State] = {}
        for charge in reservation.rules:
            table = self._table(charge.rule)
            state = pending.get((charge.rule.name, charge.key)) or self._state(
                table, charge.key, now
            )
            new, result = table.algorithm.apply(state, now, "check", charge.weight)
            if new is not None:
                pending[charge.rule.name, charge.key] = new
                writes.append((table, charge.key, new, result.reset_after))
            results.append(result)
        return results, writes

    def _found(self, reservation: Reservation, now: float) -> list[RateLimitResult]:
        """Each rule as a check of its weight would find it, consuming nothing."""
        results = []
        for charge in reservation.rules:
            table = self._table(charge.rule)
            state = self._state(table, charge.key, now)
            results.append(table.algorithm.apply(state, now, "peek", charge.weight)[1])
        return results

    @staticmethod
    def _state(table: _Table, key: str, now: float) -> State | None:
        entry = table.entries.get(key)
        return entry[0] if entry is not None and entry[1] > now else None

    def _write(self, table: _Table, key: str, new: State, reset: float, now: float) -> None:
        entries = table.entries
        if reset > 0:
            if key not in entries:
                self._sweep(entries, now)
            entries[key] = (new, now + reset)
        else:
            entries.pop(key, None)

    def _counter(self, account: str, period: int, now: float) -> int:
        counter = self._budgets.get((account, period))
        return counter[0] if counter is not None and counter[1] > now else 0

    def _charge(self, budget: BudgetCharge, found: int, now: float) -> int:
        spent = found + budget.amount
        self._set_counter(budget.account, budget.period, spent, now, budget.keep_seconds)
        return spent

    def _set_counter(self, account: str, period: int, value: int, now: float, keep: float) -> None:
        key = (account, period)
        if key not in self._budgets:  # only a new counter makes the dict grow: sweep then
            self._sweep(self._budgets, now)
        self._budgets[key] = (value, now + keep)

    def _leases(self, account: str, now: float) -> OrderedDict[str, float]:
        """``account``'s live leases (those run out are dropped, from the front)."""
        leases = self._slots.get(account)
        if leases is None:
            return OrderedDict()
        while leases and leases[next(iter(leases))] <= now:
            leases.popitem(last=False)
        if not leases:
            del self._slots[account]
        return leases

    def _take(self, slot: SlotCharge, leases: OrderedDict[str, float], expires: float) -> None:
        leases[slot.lease] = expires
        leases.move_to_end(slot.lease)
        self._slots[slot.account] = leases

    def settle_now(self, settlement: Settlement) -> list[RateLimitResult]:
        """`settle`, synchronously."""
        results = [self.apply_now(c.rule, c.key, "refund", c.weight) for c in settlement.refunds]
        now = self._clock()
        budget = settlement.budget
        if budget is not None:
            value = max(0, self._counter(budget.account, budget.period, now) + budget.delta)
            self._set_counter(budget.account, budget.period, value, now, budget.keep_seconds)
        slot = settlement.slot
        if slot is not None:
            leases = self._leases(slot.account, now)
            if leases.pop(slot.lease, None) is not None and not leases:
                del self._slots[slot.account]
        return results

    async def reserve(self, reservation: Reservation, lease_seconds: float) -> Reserved:
        return self.reserve_now(reservation, lease_seconds)

    async def settle(self, settlement: Settlement) -> list[RateLimitResult]:
        return self.settle_now(settlement)

    async def renew(self, held: Sequence[HeldLease], lease_seconds: float) -> None:
        """Extend each lease still live; one that ran out stays free."""
        now = self._clock()
        for lease in held:
            leases = self._slots.get(lease.account)
            if leases is not None and leases.get(lease.lease, 0.0) > now:
                leases[lease.lease] = now + lease_seconds
                leases.move_to_end(lease.lease)

    async def spent(self, account: str, period: int) -> int:
        return self._counter(account, period, self._clock())

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._tables.clear()
        self._budgets.clear()
        self._slots.clear()
