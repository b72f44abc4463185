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

A request's reservations (`reserve`: its rules, budget and parallel slot, one store call
per hash tag, run at once) are all or nothing across the tags: when one is denied, what
the others took is settled back at once. The parallel slots taken are leases this
process renews in the background (`revoctl.core.limits._leases`) until `settle` frees
them. A reservation ``failure_mode`` answered has ``stored`` False: nothing to settle.

The operator's calls (`peek`, `inspect`, `reset`, `run_checks`) are strict: they
raise, because an operator must see the store as it is, not the policy's stand-in
(`revoctl.core.limits._operator`, with the rules by name and the keys' checks). The
runtime's own read, `current` (a rule's state for a response's headers), is fail-soft.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from revoctl.core.errors import PoolExhaustedError
from revoctl.core.limits._condition import describe_failure
from revoctl.core.limits._failsoft import FailSoftCalls, StoreFailure, StoreOpener
from revoctl.core.limits._leases import MAX_LEASE_AGE, LeaseKeeper, new_lease_id
from revoctl.core.limits._log import RateLimitLogWriter
from revoctl.core.limits._operator import MAX_KEY_LENGTH, MAX_WEIGHT
from revoctl.core.limits._reservations import (
    check_charges,
    enabled,
    enabled_settlement,
    failure_answer,
    give_back,
    with_disabled,
)
from revoctl.core.limits.base import LimitStore, Op, RateLimitResult
from revoctl.core.limits.reservations import (
    LEASE_SECONDS,
    RENEW_SECONDS,
    HeldLease,
    Reservation,
    Reserved,
    Settlement,
)
from revoctl.core.limits.settings import FailureMode, LimitsConfig, RateLimitRule
from revoctl.core.tracing import span

logger = logging.getLogger("revoctl.limits")

CLOSE_FLUSH_SECONDS = 5.0
"""How long closing waits for the event log's last batch."""


class RateLimiter(FailSoftCalls):
    """Rules from ``config`` applied on a store: ``store`` (ready) or ``open_store`` (an
    async factory called on first use, so a Redis URL's secret is read only then).

    ``log`` receives denials and store failures; ``clock`` (monotonic seconds) paces the
    recovery probes and dates the leases held, and is injectable for tests. Parallel
    slots are leases of ``lease_seconds``, renewed every ``renew_seconds`` up to
    ``max_lease_age``.
    """

    def __init__(
        self,
        config: LimitsConfig,
        *,
        store: LimitStore | None = None,
        open_store: StoreOpener | None = None,
        log: RateLimitLogWriter | None = None,
        clock: Callable[[], float] = time.monotonic,
        lease_seconds: float = LEASE_SECONDS,
        renew_seconds: float = RENEW_SECONDS,
        max_lease_age: float = MAX_LEASE_AGE,
    ) -> None:
        super().__init__(config, store=store, open_store=open_store, log=log, clock=clock)
        self._admit = config.failure_mode is FailureMode.OPEN
        self._leases = LeaseKeeper(
            lambda: self.store,
            lease_seconds=lease_seconds,
            renew_seconds=renew_seconds,
            max_age=max_lease_age,
            timeout=config.timeout_seconds,
            clock=clock,
        )

    async def _close(self) -> None:
        try:
            await self._leases.stop()
            if self.log is not None:
                await self.log.close(CLOSE_FLUSH_SECONDS)
        finally:
            if self._store is not None:
                await self._store.close()

    # ------------------------------------------------------------------ the runtime's calls

    async def check_rate_limit(
        self, rule: str | RateLimitRule, identifier: str | None, weight: int = 1
    ) -> RateLimitResult:
        """`_check`, in a ``ratelimit.check`` span (the rule, whether it allowed)."""
        with span("ratelimit.check", rule=getattr(rule, "name", rule)) as traced:
            result = await self._check(rule, identifier, weight)
            traced.set_attribute("allowed", result.allowed)
            return result

    async def _check(
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

    # ------------------------------------------------------------------ reservations

    async def reserve(self, reservations: Sequence[Reservation]) -> list[Reserved]:
        """`_reserve`, in a ``ratelimit.reserve`` span (the rules, whether all allowed)."""
        with span("ratelimit.reserve") as traced:
            reserved = await self._reserve(reservations)
            if traced.is_recording():
                rules = [c.rule.name for r in reservations for c in r.rules]
                traced.set_attribute("rule", ",".join(rules))
                traced.set_attribute("allowed", all(r.allowed for r in reserved))
            return reserved

    async def _reserve(self, reservations: Sequence[Reservation]) -> list[Reserved]:
        """Take every reservation (one store call each, at once), all or nothing: when any
        is denied, what the others took is settled back before this returns, so a denied
        request has nothing to settle. While the store fails, ``failure_mode`` answers a
        reservation with ``stored`` False (nothing taken, nothing to settle). Each rule is
        counted and a denial logged like a check.

        :raises UsageError: a key, account, weight or lease id no store can keep.
        """
        for reservation in reservations:
            check_charges(reservation)
        sent = [enabled(reservation) for reservation in reservations]
        local = self._reserve_local
        lease_seconds = self._leases.lease_seconds
        if local is not None:  # a store in this process: nothing to wait for, nothing to fail
            answers: list[Reserved | StoreFailure] = [local(r, lease_seconds) for r in sent]
        elif len(sent) == 1:
            answers = [await self._attempt(lambda store: store.reserve(sent[0], lease_seconds))]
        else:
            answers = await asyncio.gather(*(self._reserve_one(r, lease_seconds) for r in sent))
        reserved = [
            self._account(reservation, answer)
            for reservation, answer in zip(reservations, answers, strict=True)
        ]
        if all(r.allowed for r in reserved):
            for reservation, taken in zip(sent, reserved, strict=True):
                slot = reservation.slot
                if slot is not None and taken.stored:
                    self._leases.add(HeldLease(reservation.tag, slot.account, slot.lease))
        else:
            taken_back = [
                give_back(reservation)
                for reservation, taken in zip(sent, reserved, strict=True)
                if taken.stored and taken.allowed
            ]
            if taken_back:
                await self.settle(taken_back)
        return reserved

    async def _reserve_one(
        self, reservation: Reservation, lease_seconds: float
    ) -> Reserved | StoreFailure:
        return await self._attempt(lambda store: store.reserve(reservation, lease_seconds))

    def _account(self, reservation: Reservation, answer: Reserved | StoreFailure) -> Reserved:
        """The answer to ``reservation`` (failure_mode's, when the store gave none), with its
        disabled rules in place, each rule counted and each denial logged."""
        charges = reservation.rules
        if isinstance(answer, StoreFailure):
            reserved = failure_answer(self._condition, reservation, answer.reason, self._admit)
        else:
            reserved = answer
            reserved.rules = with_disabled(charges, answer.rules)
        for charge, result in zip(charges, reserved.rules, strict=True):
            tally = self._tally(charge.rule)
            if not charge.rule.enabled or (reserved.stored and result.allowed):
                tally[0] += 1
            elif reserved.stored:
                tally[1] += 1
                self._event(charge.rule, charge.key, charge.weight, result, "denied")
            else:
                tally[2 if result.allowed else 3] += 1
                self._event(charge.rule, charge.key, charge.weight, result, "store_failure")
        return reserved

    async def settle(self, settlements: Sequence[Settlement]) -> list[list[RateLimitResult] | None]:
        """Apply each settlement (one store call each, at once): the refunded rules' states
        after it, or None for a settlement the store did not take (the failure is counted
        and logged like a check's; a slot it did not free runs out by itself, no longer
        renewed)."""
        for settlement in settlements:
            if settlement.slot is not None:
                self._leases.remove(settlement.slot.lease)
        sent = [enabled_settlement(settlement) for settlement in settlements]
        local = self._settle_local
        if local is not None:
            answers: list[list[RateLimitResult] | StoreFailure] = [local(s) for s in sent]
        elif len(sent) == 1:  # a request's usual one: no task to gather
            answers = [await self._settle_one(sent[0])]
        else:
            answers = await asyncio.gather(*(self._settle_one(s) for s in sent))
        return [
            None if isinstance(answer, StoreFailure) else with_disabled(settlement.refunds, answer)
            for settlement, answer in zip(settlements, answers, strict=True)
        ]

    async def _settle_one(self, settlement: Settlement) -> list[RateLimitResult] | StoreFailure:
        return await self._attempt(lambda store: store.settle(settlement))

    def new_lease(self) -> str:
        """An id for a parallel slot, unique across processes and hosts."""
        return new_lease_id()

    @property
    def leases_held(self) -> int:
        """Parallel slots this process holds (and renews) now."""
        return len(self._leases)

    async def _fail_soft(
        self, rule: RateLimitRule, key: str, op: Op, weight: int
    ) -> RateLimitResult | str:
        """The store's answer, or why it gave none: it failed, found no free connection in
        time, or is down and this call is not its probe."""
        answer = await self._attempt(lambda store: store.apply(rule, key, op, weight))
        return answer.reason if isinstance(answer, StoreFailure) else answer

    async def health_check(self, budget: float | None = None) -> dict[str, Any]:
        """``{"status", "store", "target", "failure_mode", "latency_ms", "decisions",
        "store_failures", "pool_wait_seconds", "pool_waits_expired", "leases_held",
        "reason"?}``.

        Pings the store (within ``budget``): degraded, with the reason, while it fails,
        since ``failure_mode`` is answering for it. A successful ping ends an outage.
        ``pool_waits_expired`` counts the calls ``failure_mode`` answered because no
        connection came free within ``pool_wait_seconds``; ``leases_held`` is the parallel
        slots this process holds and renews.
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
            "leases_held": len(self._leases),
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
