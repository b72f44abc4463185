"""`MemoryLimitStore`: counters in this process's memory, for one process only.

Every operation runs to completion without awaiting anything, so on one event loop
each decision is atomic without a lock. Memory stays bounded without a background
thread: a key whose state has run out counts as new when it is next touched (lazy
expiry), and each new key makes the sweep look at the next two keys of a round
through the rule's keys and drop those that have run out (a bounded sweep), so keys
nobody touches again go too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import islice
from typing import Any

from revoctl.core.limits._algorithms import Algorithm, State, algorithm_for
from revoctl.core.limits.base import Op, RateLimitResult
from revoctl.core.limits.settings import RateLimitRule

_Entry = tuple[State, float]
"""A key's state and when it runs out (wall clock)."""

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

    def describe(self) -> str:
        return "process memory"

    def __len__(self) -> int:
        return sum(len(table.entries) for table in self._tables.values())

    def _table(self, rule: RateLimitRule) -> _Table:
        """The rule's table; a rule of that name with other numbers starts afresh."""
        table = self._tables.get(rule.name)
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
    def _sweep(entries: dict[str, _Entry], now: float) -> None:
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

    # TODO(issue 18): replaced by the reservation work in progress.
    async def reserve(self, reservation: Any, lease_seconds: float) -> Any:
        raise NotImplementedError

    async def settle(self, settlement: Any) -> Any:
        raise NotImplementedError

    async def renew(self, held: Any, lease_seconds: float) -> None:
        raise NotImplementedError

    async def spent(self, account: str, period: int) -> int:
        raise NotImplementedError

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._tables.clear()
