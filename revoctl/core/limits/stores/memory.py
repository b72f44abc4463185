"""`MemoryLimitStore`: counters in this process's memory, for one process only.

Every operation runs to completion without awaiting anything, so on one event loop
each decision is atomic without a lock. Memory stays bounded without a background
thread: a key whose state has run out counts as new when it is next touched (lazy
expiry), and every write also looks at the next few keys of a round through all of them and
drops those that have run out (a bounded sweep), so keys nobody touches again go too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import islice

from revoctl.core.limits._algorithms import Algorithm, State, algorithm_for
from revoctl.core.limits.base import Op, RateLimitResult
from revoctl.core.limits.settings import RateLimitAlgorithm, RateLimitRule

_Key = tuple[str, RateLimitAlgorithm, str]

SWEEP_PER_WRITE = 2
"""Keys the sweep examines per write: more than one, so expired keys are dropped
faster than new ones arrive."""


class MemoryLimitStore:
    """Per-key state in a dict that doubles as the sweep's round; ``clock`` is wall-clock seconds
    (windows are aligned to the epoch) and injectable for tests and simulations."""

    kind = "memory"
    remote = False

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._entries: dict[_Key, tuple[State, float]] = {}
        self._algorithms: dict[str, tuple[RateLimitRule, Algorithm]] = {}

    def describe(self) -> str:
        return "process memory"

    def __len__(self) -> int:
        return len(self._entries)

    def _algorithm(self, rule: RateLimitRule) -> Algorithm:
        cached = self._algorithms.get(rule.name)
        if cached is None or cached[0] is not rule:
            cached = self._algorithms[rule.name] = (rule, algorithm_for(rule))
        return cached[1]

    def apply_now(self, rule: RateLimitRule, key: str, op: Op, weight: int) -> RateLimitResult:
        """`apply`, synchronously: the whole decision, with nothing awaited."""
        now = self._clock()
        entries = self._entries
        entry_key = (rule.name, rule.algorithm, key)
        entry = entries.get(entry_key)
        state = entry[0] if entry is not None and entry[1] > now else None
        new, result = self._algorithm(rule).apply(state, now, op, weight)
        if new is not None:
            if entry is not None:
                del entries[entry_key]  # re-inserted at the back: just seen, swept last
            if result.reset_after > 0:
                entries[entry_key] = (new, now + result.reset_after)
            self._sweep(now)
        return result

    def _sweep(self, now: float) -> None:
        """Look at the keys at the front of the round: drop those run out, send the rest to
        the back, so that the round passes every key in turn."""
        entries = self._entries
        for entry_key in list(islice(entries, SWEEP_PER_WRITE)):
            entry = entries.pop(entry_key)
            if entry[1] > now:
                entries[entry_key] = entry

    async def apply(self, rule: RateLimitRule, key: str, op: Op, weight: int) -> RateLimitResult:
        return self.apply_now(rule, key, op, weight)

    async def keys(self, rule: RateLimitRule) -> list[str]:
        now = self._clock()
        return [
            key
            for (name, algorithm, key), (_, expires) in self._entries.items()
            if name == rule.name and algorithm is rule.algorithm and expires > now
        ]

    async def reset(self, rule: RateLimitRule, key: str | None) -> int:
        doomed = [
            entry_key
            for entry_key in self._entries
            if entry_key[0] == rule.name and (key is None or entry_key[2] == key)
        ]
        for entry_key in doomed:
            del self._entries[entry_key]
        return len(doomed)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()
