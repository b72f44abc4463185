"""`FailSoftCalls`: the store's answer to a runtime call, or why it gave none, and the counts.

A runtime call must get an answer even when the store fails: `_attempt` runs one store
call (within ``timeout_seconds`` on a remote store) and, instead of raising, returns a
`StoreFailure` that says why the store gave no answer: it failed (down until a probe
succeeds), found no free connection in time (busy, that call alone), or is down and
this call is not its probe (`revoctl.core.limits._condition`). The caller answers by
``failure_mode``. Each rule's decisions are counted per outcome (`decisions`, for the
metrics) and denials and failures written to the event log.

A store in this process (memory) is called synchronously instead (``apply_now``,
``reserve_now``, ``settle_now``): nothing to wait for, nothing to fail.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from revoctl.core._guard import NO_GUARD, CallGuard, effective
from revoctl.core._lifecycle import ServiceState
from revoctl.core.errors import PoolExhaustedError
from revoctl.core.limits._condition import StoreCondition
from revoctl.core.limits._log import EventKind, RateLimitEvent, RateLimitLogWriter
from revoctl.core.limits._operator import OperatorCalls
from revoctl.core.limits.base import LimitStore, Op, RateLimitResult
from revoctl.core.limits.reservations import Reservation, Reserved, Settlement
from revoctl.core.limits.settings import LimitsConfig, RateLimitRule, RateLimitScope

StoreOpener = Callable[[], Awaitable[LimitStore]]
LocalApply = Callable[[RateLimitRule, str, Op, int], RateLimitResult]
"""A store's synchronous decision, for a store in this process (`MemoryLimitStore.apply_now`)."""
LocalReserve = Callable[[Reservation, float], Reserved]
LocalSettle = Callable[[Settlement], list[RateLimitResult]]
T = TypeVar("T")
_Plan = tuple[RateLimitRule, list[int], bool]
"""A rule, its counters per outcome, and whether it has keys of its own (see `_plan`)."""

OUTCOMES = ("allowed", "denied", "failed_open", "failed_closed")
"""Decision outcomes as counted per rule (``revoctl_rate_limit_decisions_total``)."""


class StoreFailure:
    """Why the store gave no answer (failed, busy, down and not this call's probe)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class FailSoftCalls(OperatorCalls):
    """The store (``store``, or opened on first use by ``open_store``) behind calls that
    never raise for it; ``clock`` is monotonic seconds."""

    def __init__(
        self,
        config: LimitsConfig,
        *,
        store: LimitStore | None,
        open_store: StoreOpener | None,
        log: RateLimitLogWriter | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (store is None) == (open_store is None):
            raise ValueError("give exactly one of store and open_store")
        super().__init__(config, store)
        self.log = log
        self._open_store = open_store
        self._clock = clock
        self._tallies: dict[str, list[int]] = {}
        self._plans = {rule.name: self._plan(rule) for rule in config.rules}
        self._local: LocalApply | None = None
        self._reserve_local: LocalReserve | None = None
        self._settle_local: LocalSettle | None = None
        self._condition = StoreCondition(config, clock)
        self.guard: CallGuard = NO_GUARD
        """Judges the calls to a remote store (the composition fills it with the ``redis``
        breaker on the Redis store): while it refuses, ``failure_mode`` answers at once."""

    async def _open(self) -> None:
        if self._store is None and self._open_store is not None:
            self._store = await self._open_store()
        if self._store is not None and not self._store.remote:
            self._local = getattr(self._store, "apply_now", None)
            self._reserve_local = getattr(self._store, "reserve_now", None)
            self._settle_local = getattr(self._store, "settle_now", None)

    async def _attempt(self, call: Callable[[LimitStore], Awaitable[T]]) -> T | StoreFailure:
        """``call``'s answer on the store (within ``timeout_seconds`` when it is remote), or
        why it gave none."""
        condition = self._condition
        refusal = condition.refusal()
        if refusal is not None:
            return StoreFailure(refusal)
        probe = condition.down
        try:
            if self._state is not ServiceState.OPEN:
                await self.initialize()
            store = self.store
            if store.remote:
                # The guard outside the deadline: a call cut by it is the server's failure.
                async with effective(self.guard).guarded():
                    async with asyncio.timeout(self.config.timeout_seconds):
                        result = await call(store)
            else:
                result = await call(store)
        except PoolExhaustedError as exc:
            return StoreFailure(condition.busy(exc))
        except Exception as exc:
            return StoreFailure(condition.failed(exc))
        finally:
            if probe:
                condition.end_probe()
        if condition.down:
            condition.recovered()
        return result

    def _plan(self, rule: RateLimitRule) -> _Plan:
        """What a check needs of ``rule``: the rule, its counters (one per outcome in
        `OUTCOMES` order) and whether it has keys of its own (not ``global``)."""
        tally = self._tallies.setdefault(rule.name, [0] * len(OUTCOMES))
        return rule, tally, rule.scope is not RateLimitScope.GLOBAL

    def _tally(self, rule: RateLimitRule) -> list[int]:
        plan = self._plans.get(rule.name)
        return plan[1] if plan is not None else self._plan(rule)[1]

    def _event(
        self, rule: RateLimitRule, key: str, weight: int, result: RateLimitResult, kind: EventKind
    ) -> None:
        if self.log is not None:
            self.log.add(
                RateLimitEvent(
                    rule=rule.name,
                    key=key,
                    allowed=result.allowed,
                    remaining=result.remaining,
                    weight=weight,
                    event=kind,
                    reason=result.reason,
                    ts=datetime.now(UTC),
                )
            )

    def decisions(self) -> dict[str, dict[str, int]]:
        """Decisions so far, per rule and outcome (``allowed``, ``denied``, ``failed_open``,
        ``failed_closed``)."""
        return {
            rule: dict(zip(OUTCOMES, tally, strict=True))
            for rule, tally in sorted(self._tallies.items())
        }
