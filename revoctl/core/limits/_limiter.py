"""`RateLimiter`: the rules of ``[limits]`` applied to keys, on one store, fail-soft.

A check is one store call that decides and returns every number. When the store
fails (unreachable, too slow, not migrated) the runtime's calls still get an answer:
``failure_mode = "open"`` admits, ``"closed"`` denies, the failure is logged, counted
and written to the event log, and health turns ``degraded``. While the store is down,
one call per ``probe_interval_seconds`` tries it (the others are answered at once,
so an outage causes no reconnect storm); the first that succeeds brings every
decision back to the store.

A busy store is not a down one. A decision waits for a free connection (all of
``redis.max_connections``, or of the database pool, in use) up to
``pool_wait_seconds``, half of ``timeout_seconds``; when that wait runs out,
``failure_mode`` answers that call alone and the next call goes to the store as usual.
Only a store that does not answer (unreachable, past ``timeout_seconds``) is treated
as down. `revoctl.core.limits._condition` keeps that account.

The operator's calls (`peek`, `inspect`, `reset`, `run_checks`) are strict: they
raise, because an operator must see the store as it is, not the policy's stand-in
(`revoctl.core.limits._operator`, with the rules by name and the keys' checks). The
runtime's own read, `current` (a rule's state for a response's headers), is fail-soft.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from revoctl.core._lifecycle import ServiceState
from revoctl.core.errors import PoolExhaustedError
from revoctl.core.limits._condition import StoreCondition, describe_failure
from revoctl.core.limits._log import EventKind, RateLimitEvent, RateLimitLogWriter
from revoctl.core.limits._operator import MAX_KEY_LENGTH, MAX_WEIGHT, OperatorCalls
from revoctl.core.limits.base import LimitStore, Op, RateLimitResult
from revoctl.core.limits.settings import LimitsConfig, RateLimitRule, RateLimitScope

logger = logging.getLogger("revoctl.limits")

StoreOpener = Callable[[], Awaitable[LimitStore]]
LocalApply = Callable[[RateLimitRule, str, Op, int], RateLimitResult]
"""A store's synchronous decision, for a store in this process (`MemoryLimitStore.apply_now`)."""
_Plan = tuple[RateLimitRule, list[int], bool]
"""A rule, its counters per outcome, and whether it has keys of its own (see `_plan`)."""
CLOSE_FLUSH_SECONDS = 5.0
"""How long closing waits for the event log's last batch."""

OUTCOMES = ("allowed", "denied", "failed_open", "failed_closed")
"""Decision outcomes as counted per rule (``revoctl_rate_limit_decisions_total``)."""


class RateLimiter(OperatorCalls):
    """Rules from ``config`` applied on a store: ``store`` (ready) or ``open_store`` (an
    async factory called on first use, so a Redis URL's secret is read only then).

    ``log`` receives denials and store failures; ``clock`` (monotonic seconds) paces the
    recovery probes and is injectable for tests.
    """

    def __init__(
        self,
        config: LimitsConfig,
        *,
        store: LimitStore | None = None,
        open_store: StoreOpener | None = None,
        log: RateLimitLogWriter | None = None,
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
        self._condition = StoreCondition(config, clock)

    # ------------------------------------------------------------------ lifecycle

    async def _open(self) -> None:
        if self._store is None and self._open_store is not None:
            self._store = await self._open_store()
        if self._store is not None and not self._store.remote:
            self._local = getattr(self._store, "apply_now", None)

    async def _close(self) -> None:
        try:
            if self.log is not None:
                await self.log.close(CLOSE_FLUSH_SECONDS)
        finally:
            if self._store is not None:
                await self._store.close()

    # ------------------------------------------------------------------ the runtime's calls

    async def check_rate_limit(
        self, rule: str | RateLimitRule, identifier: str | None, weight: int = 1
    ) -> RateLimitResult:
        """Decide one request of ``weight`` units for ``identifier`` under ``rule``.

        Allowed: ``weight`` units are consumed. Denied: nothing is, and ``retry_after``
        says when the same check would pass (None when it never can: the weight is above
        the limit, see ``reason``). While the store fails, ``failure_mode`` answers.

        :raises NotFoundError: no rule has that name.
        :raises UsageError: the identifier or the weight is invalid.
        """
        # The common case is checked inline: this is the hot path of every request.
        plan = self._plans.get(rule) if rule.__class__ is str else None
        if plan is None:
            plan = self._plan(self.rule(rule))
        found, tally, keyed = plan
        if keyed and identifier.__class__ is str and 0 < len(identifier) <= MAX_KEY_LENGTH:
            key: str = identifier
        else:
            key = self.key_for(found, identifier)
        if weight.__class__ is not int or not 0 < weight <= MAX_WEIGHT:
            weight = self._weight(weight)
        if not found.enabled:
            tally[0] += 1
            limit = found.capacity
            return RateLimitResult(True, limit, limit, None, 0.0, "the rule is disabled")
        local = self._local
        if local is not None:  # a store in this process: nothing to wait for, nothing to fail
            result = local(found, key, "check", weight)
        else:
            answer = await self._fail_soft(found, key, "check", weight)
            if isinstance(answer, str):  # the store could not decide: failure_mode answers
                result = self._condition.answer(found, answer)
                tally[2 if result.allowed else 3] += 1
                self._event(found, key, weight, result, "store_failure")
                return result
            result = answer
        if result.allowed:
            tally[0] += 1
        else:
            tally[1] += 1
            self._event(found, key, weight, result, "denied")
        return result

    def _plan(self, rule: RateLimitRule) -> _Plan:
        """What a check needs of ``rule``: the rule, its counters (one per outcome in
        `OUTCOMES` order) and whether it has keys of its own (not ``global``)."""
        tally = self._tallies.setdefault(rule.name, [0] * len(OUTCOMES))
        return rule, tally, rule.scope is not RateLimitScope.GLOBAL

    async def refund(
        self, rule: str | RateLimitRule, identifier: str | None, weight: int
    ) -> RateLimitResult | None:
        """Give back ``weight`` units charged earlier (never past a full key); 0 does nothing.

        Returns the key's state after the refund, or None when the store failed (the
        failure is logged and counted like a check's).

        :raises NotFoundError: no rule has that name.
        :raises UsageError: the identifier or the weight is invalid.
        """
        found = self.rule(rule)
        key = self.key_for(found, identifier)
        if self._weight(weight, minimum=0) == 0 or not found.enabled:
            return None
        answer = await self._fail_soft(found, key, "refund", weight)
        return None if isinstance(answer, str) else answer

    async def current(
        self, rule: str | RateLimitRule, identifier: str | None
    ) -> RateLimitResult | None:
        """What a check of one unit for ``identifier`` would answer now, consuming nothing:
        the state a response shows of a rule it was not charged on. Fail-soft, unlike `peek`:
        None when the store cannot say now (it is down, busy or failing).

        :raises NotFoundError: no rule has that name.
        :raises UsageError: the identifier is invalid.
        """
        found = self.rule(rule)
        key = self.key_for(found, identifier)
        if not found.enabled:
            limit = found.capacity
            return RateLimitResult(True, limit, limit, None, 0.0, "the rule is disabled")
        if self._local is not None:
            return self._local(found, key, "peek", 1)
        answer = await self._fail_soft(found, key, "peek", 1)
        return None if isinstance(answer, str) else answer

    async def _fail_soft(
        self, rule: RateLimitRule, key: str, op: Op, weight: int
    ) -> RateLimitResult | str:
        """The store's answer, or why it gave none: it failed, found no free connection in
        time, or is down and this call is not its probe."""
        condition = self._condition
        refusal = condition.refusal()
        if refusal is not None:
            return refusal
        probe = condition.down
        try:
            if self._state is not ServiceState.OPEN:
                await self.initialize()
            store = self.store
            if store.remote:
                async with asyncio.timeout(self.config.timeout_seconds):
                    result = await store.apply(rule, key, op, weight)
            else:
                result = await store.apply(rule, key, op, weight)
        except PoolExhaustedError as exc:
            return condition.busy(exc)
        except Exception as exc:
            return condition.failed(exc)
        finally:
            if probe:
                condition.end_probe()
        if condition.down:
            condition.recovered()
        return result

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

    # ------------------------------------------------------------------ counters and health

    def decisions(self) -> dict[str, dict[str, int]]:
        """Decisions so far, per rule and outcome (``allowed``, ``denied``, ``failed_open``,
        ``failed_closed``)."""
        return {
            rule: dict(zip(OUTCOMES, tally, strict=True))
            for rule, tally in sorted(self._tallies.items())
        }

    async def health_check(self, budget: float | None = None) -> dict[str, Any]:
        """``{"status", "store", "target", "failure_mode", "latency_ms", "decisions",
        "store_failures", "pool_wait_seconds", "pool_waits_expired", "reason"?}``.

        Pings the store (within ``budget``): degraded, with the reason, while it fails,
        since ``failure_mode`` is answering for it. A successful ping ends an outage.
        ``pool_waits_expired`` counts the calls ``failure_mode`` answered because no
        connection came free within ``pool_wait_seconds``.
        """
        timeout = min(self.config.timeout_seconds, budget or self.config.timeout_seconds)
        report: dict[str, Any] = {
            "status": "healthy",
            "store": self.config.store.value,
            "target": None,
            "failure_mode": self.config.failure_mode.value,
            "latency_ms": None,
            "rules": len(self.config.rules),
            "decisions": self.decisions(),
            "store_failures": self._condition.failures,
            "pool_wait_seconds": self.config.pool_wait_seconds,
            "pool_waits_expired": self._condition.busy_answers,
        }
        if self.log is not None:
            report["event_log"] = self.log.stats()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                await self.initialize()
                report["target"] = self.store.describe()
                await self.store.ping()
        except Exception as exc:
            state = "busy" if isinstance(exc, PoolExhaustedError) else "failing"
            report["status"] = "degraded"
            report["reason"] = (
                f"the {self.config.store.value} store is {state} "
                f"({describe_failure(exc, timeout)}); "
                f"failure_mode {self.config.failure_mode.value} answers for it"
            )
            return report
        report["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
        self._condition.recovered()
        return report
