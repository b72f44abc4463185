"""Reservations on the memory store, and `RateLimiter.reserve`/`settle` over any store:
all or nothing within a reservation and across a request's reservations, the budget and
slot numbers, ``failure_mode`` answering with ``stored`` False, the leases held and their
renewal. Fast fakes here; the same contract on every real store is in
``tests/integration/test_reservations.py``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable, Sequence

import pytest

from revoctl.core.errors import BackendUnavailableError, PoolExhaustedError, UsageError
from revoctl.core.limits import (
    LimitsConfig,
    MemoryLimitStore,
    RateLimiter,
    RateLimitEvent,
    RateLimitLogWriter,
    RateLimitRule,
)
from revoctl.core.limits._leases import lease_holder
from revoctl.core.limits.base import RateLimitResult
from revoctl.core.limits.reservations import (
    BudgetCharge,
    BudgetSettlement,
    HeldLease,
    Reservation,
    Reserved,
    RuleCharge,
    Settlement,
    SlotCharge,
    SlotRelease,
    to_nano,
)

API = RateLimitRule(name="api", requests=10, window_seconds=60)
TOKENS = RateLimitRule(name="tokens", requests=100, window_seconds=60, algorithm="fixed_window")
OFF = RateLimitRule(name="off", requests=1, window_seconds=60, enabled=False)
RULES = (API, TOKENS, OFF)
DAY = 86_400.0


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def budget(amount: float, limit: float = 1.0, account: str = "team") -> BudgetCharge:
    return BudgetCharge(account, 0, to_nano(limit, up=False), to_nano(amount, up=True), DAY)


def request(
    weight: int = 1,
    *,
    tag: str = "team",
    cost: float | None = None,
    cap: int = 0,
    lease: str = "",
    rules: tuple[RateLimitRule, ...] = (API,),
) -> Reservation:
    return Reservation(
        tag,
        rules=tuple(RuleCharge(rule, tag, weight) for rule in rules),
        budget=None if cost is None else budget(cost, account=tag),
        slot=SlotCharge(tag, cap, lease) if cap else None,
    )


# ---------------------------------------------------------------------- the memory store


async def test_a_reservation_takes_every_part_or_nothing() -> None:
    store = MemoryLimitStore(clock=Clock())
    taken = await store.reserve(request(4, cost=0.5, cap=1, lease="l1", rules=(API, TOKENS)), 15)
    assert taken.allowed and taken.stored
    assert [r.remaining for r in taken.rules] == [6, 96]  # remaining after the charge
    assert (taken.spent, taken.in_flight) == (to_nano(0.5, up=False), 1)

    for denied in (
        request(7, cost=0.1, rules=(API, TOKENS)),  # the rule denies: no budget, no tokens
        request(1, cost=0.6, rules=(API, TOKENS)),  # the budget denies: no rule units
        request(1, cost=0.1, cap=1, lease="l2", rules=(API, TOKENS)),  # the slot denies
    ):
        answer = await store.reserve(denied, 15)
        assert not answer.allowed
        assert [r.remaining for r in answer.rules] == [6, 96]  # as found
        assert answer.spent == to_nano(0.5, up=False)
        assert await store.spent("team", 0) == to_nano(0.5, up=False)
    answer = await store.reserve(request(7, cost=0.6, rules=(API, TOKENS)), 15)
    assert [r.allowed for r in answer.rules] == [False, True]  # each as its own check
    assert (answer.budget_allowed, answer.slot_allowed) == (False, True)
    assert (await store.apply(API, "team", "peek", 1)).remaining == 6


async def test_settle_gives_back_units_settles_the_cost_and_frees_the_slot() -> None:
    store = MemoryLimitStore(clock=Clock())
    await store.reserve(request(5, cost=0.4, cap=1, lease="l1", rules=(API, TOKENS)), 15)
    after = await store.settle(
        Settlement(
            "team",
            refunds=(RuleCharge(TOKENS, "team", 3),),
            budget=BudgetSettlement("team", 0, -to_nano(0.3, up=False), DAY),
            slot=SlotRelease("team", "l1"),
        )
    )
    assert [r.remaining for r in after] == [98]
    assert await store.spent("team", 0) == to_nano(0.1, up=False)
    assert (await store.reserve(request(cap=1, lease="l2"), 15)).slot_allowed
    await store.settle(Settlement("team", budget=BudgetSettlement("team", 0, -NANO_TEN, DAY)))
    assert await store.spent("team", 0) == 0  # never below 0


NANO_TEN = to_nano(10, up=False)


async def test_slots_are_leases_that_run_out_unless_renewed() -> None:
    clock = Clock()
    store = MemoryLimitStore(clock=clock)
    assert (await store.reserve(request(cap=2, lease="a"), 15)).in_flight == 1
    assert (await store.reserve(request(cap=2, lease="b"), 15)).in_flight == 2
    full = await store.reserve(request(cap=2, lease="c"), 15)
    assert (full.slot_allowed, full.in_flight) == (False, 2)
    clock.now += 10
    await store.renew([HeldLease("team", "team", "a")], 15)
    clock.now += 10  # b ran out, a was renewed
    assert (await store.reserve(request(cap=2, lease="c"), 15)).in_flight == 2
    clock.now += 20  # both ran out; a renewal of a lease that ran out does not revive it
    await store.renew([HeldLease("team", "team", "a")], 15)
    assert (await store.reserve(request(cap=1, lease="d"), 15)).in_flight == 1


async def test_a_budget_counter_is_per_period_and_kept_keep_seconds() -> None:
    clock = Clock()
    store = MemoryLimitStore(clock=clock)
    await store.reserve(request(cost=0.25), 15)
    assert await store.spent("team", 0) == to_nano(0.25, up=False)
    assert await store.spent("team", 1) == 0
    clock.now += DAY + 1
    assert await store.spent("team", 0) == 0


# ---------------------------------------------------------------------- the limiter


class FlakyStore(MemoryLimitStore):
    """A remote-looking memory store that fails while ``down`` or ``busy``, and records the
    renewals it was asked for."""

    kind = "flaky"
    remote = True

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.down = False
        self.busy = False
        self.renewals: list[list[str]] = []

    def _fail(self) -> None:
        if self.down:
            raise BackendUnavailableError("cannot reach the flaky store: connection refused")
        if self.busy:
            raise PoolExhaustedError("no free connection to the flaky store within 1s")

    async def reserve(self, reservation: Reservation, lease_seconds: float) -> Reserved:
        self._fail()
        return await super().reserve(reservation, lease_seconds)

    async def settle(self, settlement: Settlement) -> list[RateLimitResult]:
        self._fail()
        return await super().settle(settlement)

    async def spent(self, account: str, period: int) -> int:
        self._fail()
        return await super().spent(account, period)

    async def renew(self, held: Sequence[HeldLease], lease_seconds: float) -> None:
        self._fail()
        self.renewals.append(sorted(h.lease for h in held))
        await super().renew(held, lease_seconds)


class Sink:
    def __init__(self) -> None:
        self.events: list[RateLimitEvent] = []

    async def __call__(self, events: Sequence[RateLimitEvent]) -> None:
        self.events.extend(events)


def limiter(
    mode: str = "open", *, remote: bool = True, **leases: float
) -> tuple[RateLimiter, FlakyStore, Clock, Sink]:
    clock = Clock()
    store = FlakyStore(clock) if remote else MemoryLimitStore(clock=clock)
    sink = Sink()
    config = LimitsConfig(store="memory", failure_mode=mode, rules=RULES)
    lim = RateLimiter(config, store=store, log=RateLimitLogWriter(sink), clock=clock, **leases)
    return lim, store, clock, sink  # type: ignore[return-value]


@pytest.mark.parametrize("remote", [True, False], ids=["remote", "in-process"])
async def test_reservations_of_a_request_are_all_or_nothing(remote: bool) -> None:
    lim, store, _, _ = limiter(remote=remote)
    await lim.reserve([request(9, tag="b", rules=(API,))])
    answers = await lim.reserve(
        [request(1, tag="a", cost=0.5, cap=1, lease=lim.new_lease()), request(2, tag="b")]
    )
    assert [a.allowed for a in answers] == [True, False]
    assert (await store.apply(API, "a", "peek", 1)).remaining == 10  # a's units came back
    assert await lim.spent("a", 0) == 0.0
    assert lim.leases_held == 0
    assert (await store.reserve(request(tag="a", cap=1, lease="x"), 15)).slot_allowed
    assert lim.decisions()["api"] == {
        "allowed": 2,
        "denied": 1,
        "failed_open": 0,
        "failed_closed": 0,
    }


async def test_a_disabled_rule_is_answered_in_its_place_without_the_store() -> None:
    lim, store, _, _ = limiter()
    [taken] = await lim.reserve([request(3, rules=(OFF, API))])
    assert [r.reason for r in taken.rules] == ["the rule is disabled", None]
    assert [r.remaining for r in taken.rules] == [1, 7]
    assert await store.keys(OFF) == []
    [after] = await lim.settle([Settlement("team", refunds=(RuleCharge(OFF, "team", 1),))])
    assert after is not None and after[0].reason == "the rule is disabled"


@pytest.mark.parametrize(
    "bad",
    [
        Reservation("t", rules=(RuleCharge(API, "x" * 256, 1),)),
        Reservation("t", rules=(RuleCharge(API, "t", 0),)),
        Reservation("t", budget=budget(0.1, account="")),
        Reservation("t", slot=SlotCharge("t", 1, "l" * 65)),
    ],
    ids=["long-key", "zero-weight", "empty-account", "long-lease"],
)
async def test_what_no_store_can_keep_is_refused_before_the_store(bad: Reservation) -> None:
    lim, store, _, _ = limiter()
    with pytest.raises(UsageError):
        await lim.reserve([request(), bad])
    assert (await store.apply(API, "team", "peek", 1)).remaining == 10  # nothing was taken
    assert (await lim.health_check())["store_failures"] == 0  # not a store failure


@pytest.mark.parametrize(("mode", "admit"), [("open", True), ("closed", False)])
async def test_failure_mode_answers_a_failed_store_with_nothing_stored(
    mode: str, admit: bool
) -> None:
    lim, store, _, sink = limiter(mode)
    store.down = True
    [answer] = await lim.reserve([request(cost=0.5, cap=1, lease=lim.new_lease())])
    assert (answer.allowed, answer.stored) == (admit, False)
    assert (answer.budget_allowed, answer.slot_allowed) == (admit, admit)
    assert answer.rules[0].reason is not None and mode in answer.rules[0].reason
    assert lim.leases_held == 0  # nothing was taken, nothing to renew
    outcome = "failed_open" if admit else "failed_closed"
    assert lim.decisions()["api"][outcome] == 1
    assert await lim.settle([Settlement("team", refunds=request().rules)]) == [None]
    with pytest.raises(BackendUnavailableError):
        await lim.spent("team", 0)  # strict, like the operator's calls
    await lim.close()
    assert [e.event for e in sink.events] == ["store_failure"]
    health = await limiter(mode)[0].health_check()
    assert health["leases_held"] == 0


async def test_closed_denies_the_request_when_one_store_call_fails() -> None:
    lim, store, _, _ = limiter("closed")
    store.busy = True
    [answer] = await lim.reserve([request(cap=3, lease=lim.new_lease(), rules=())])
    assert not answer.allowed and not answer.slot_allowed and not answer.stored


async def test_held_leases_are_renewed_together_and_freed_by_their_settlement() -> None:
    lim, store, clock, _ = limiter(renew_seconds=0.01, lease_seconds=15)
    leases = [lim.new_lease() for _ in range(3)]
    for lease in leases:
        assert (await lim.reserve([request(cap=5, lease=lease)]))[0].allowed
    assert lim.leases_held == 3
    assert (await lim.health_check())["leases_held"] == 3
    await _until(lambda: len(store.renewals) >= 2)
    assert store.renewals[-1] == sorted(leases)  # one call for every lease held
    await lim.settle([Settlement("team", slot=SlotRelease("team", leases[0]))])
    assert lim.leases_held == 2
    clock.now += 14
    seen = len(store.renewals)
    await _until(lambda: len(store.renewals) > seen)
    assert store.renewals[-1] == sorted(leases[1:])
    clock.now += 14  # renewed: still held, past the first lease_seconds
    assert (await store.reserve(request(cap=5, lease="x"), 15)).in_flight == 3
    await lim.close()
    renewals = len(store.renewals)
    await asyncio.sleep(0.05)
    assert len(store.renewals) == renewals  # closing stops the renewals


async def test_a_lease_held_past_the_maximum_age_is_let_go() -> None:
    lim, store, clock, _ = limiter(renew_seconds=0.01, lease_seconds=15, max_lease_age=100)
    await lim.reserve([request(cap=1, lease=lim.new_lease())])
    clock.now += 101  # never settled
    await _until(lambda: lim.leases_held == 0)
    assert (await store.reserve(request(cap=1, lease="y"), 15)).slot_allowed  # ran out
    await lim.close()


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def _child_lease(queue: multiprocessing.Queue[str]) -> None:
    lim, _, _, _ = limiter()
    queue.put(lim.new_lease())


def test_lease_ids_are_unique_in_a_forked_process_too() -> None:
    lim, _, _, _ = limiter()
    first = lim.new_lease()
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = context.Queue()
    child = context.Process(target=_child_lease, args=(queue,))
    child.start()
    theirs = queue.get(timeout=10)
    child.join(10)
    assert lease_holder(theirs) != lease_holder(first)
    assert lim.new_lease() != first and lease_holder(lim.new_lease()) == lease_holder(first)
