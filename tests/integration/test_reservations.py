"""The reservation contract, on every store: memory, Redis, PostgreSQL and SQLite.

A reservation takes its rules' units, its budget amount and its parallel slot all or
nothing; the numbers come back as each part's own check would give them; a budget admits
exactly what fits; a slot is a lease that runs out unless renewed; a settlement gives
back units, settles the cost and frees the slot; `spent` reads the counter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from revoctl.core.limits import LimitStore, RateLimitRule
from revoctl.core.limits.reservations import (
    BudgetCharge,
    BudgetSettlement,
    HeldLease,
    Reservation,
    RuleCharge,
    Settlement,
    SlotCharge,
    SlotRelease,
    to_nano,
)
from tests.support.limits import ALL_LIMIT_STORES, Target, close_store, open_store, store_target

pytestmark = pytest.mark.parametrize("kind", ALL_LIMIT_STORES)

REQUESTS = RateLimitRule(name="requests", requests=10, window_seconds=60)
TOKENS = RateLimitRule(name="tokens", requests=100, window_seconds=60, algorithm="sliding_window")
FIXED = RateLimitRule(name="fixed", requests=5, window_seconds=3600, algorithm="fixed_window")
DAY = 86_400.0
LEASE = 15.0
CENT = to_nano(0.01, up=False)


@pytest.fixture
def target(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return store_target(kind, request, tmp_path)


@pytest.fixture
async def store(target: Target) -> AsyncIterator[LimitStore]:
    opened, resource = await open_store(target)
    yield opened
    await close_store(opened, resource)


def reservation(
    account: str,
    *,
    weights: tuple[int, int] = (1, 10),
    cents: int | None = None,
    limit_cents: int = 100,
    cap: int = 0,
    lease: str = "",
) -> Reservation:
    """A request of ``account``: its requests and tokens rules, ``cents`` of a budget of
    ``limit_cents`` (period 0), a slot of ``cap`` as ``lease``."""
    return Reservation(
        account,
        rules=(
            RuleCharge(REQUESTS, account, weights[0]),
            RuleCharge(TOKENS, f"{account}:gpt", weights[1]),
        ),
        budget=None
        if cents is None
        else BudgetCharge(account, 0, limit_cents * CENT, cents * CENT, DAY),
        slot=SlotCharge(account, cap, lease) if cap else None,
    )


async def remaining(store: LimitStore, account: str) -> list[int]:
    return [
        (await store.apply(REQUESTS, account, "peek", 1)).remaining,
        (await store.apply(TOKENS, f"{account}:gpt", "peek", 1)).remaining,
    ]


async def test_a_reservation_takes_every_part_and_answers_each(store: LimitStore) -> None:
    taken = await store.reserve(
        reservation("a", weights=(2, 30), cents=40, cap=2, lease="a-1"), LEASE
    )
    assert taken.allowed and taken.stored
    assert [(r.allowed, r.remaining, r.limit) for r in taken.rules] == [
        (True, 8, 10),
        (True, 70, 100),
    ]
    assert (taken.budget_allowed, taken.spent) == (True, 40 * CENT)
    assert (taken.slot_allowed, taken.in_flight) == (True, 1)
    assert await remaining(store, "a") == [8, 70]
    assert await store.spent("a", 0) == 40 * CENT
    assert await store.spent("a", 1) == 0
    assert await store.spent("nobody", 0) == 0


@pytest.mark.parametrize(
    "denied",
    [
        pytest.param({"weights": (9, 1)}, id="a-rule"),
        pytest.param({"weights": (1, 71)}, id="the-other-rule"),
        pytest.param({"cents": 61}, id="the-budget"),
        pytest.param({"cap": 1, "lease": "a-2"}, id="the-slot"),
    ],
)
async def test_a_denial_by_any_part_takes_nothing(
    store: LimitStore, denied: dict[str, object]
) -> None:
    await store.reserve(reservation("a", weights=(2, 30), cents=40, cap=1, lease="a-1"), LEASE)
    parts: dict[str, object] = {"weights": (1, 1), "cents": 1, "cap": 2, "lease": "a-2"} | denied
    answer = await store.reserve(reservation("a", **parts), LEASE)  # type: ignore[arg-type]
    assert not answer.allowed and answer.stored
    assert [r.remaining for r in answer.rules] == [8, 70]  # as found
    assert answer.spent == 40 * CENT and answer.in_flight == 1
    assert await remaining(store, "a") == [8, 70]
    assert await store.spent("a", 0) == 40 * CENT
    # the slot was not taken either: one more fits under a cap of 2
    assert (
        await store.reserve(reservation("a", weights=(1, 1), cap=2, lease="a-3"), LEASE)
    ).in_flight == 2


async def test_each_rule_answers_as_its_own_check_when_the_whole_is_denied(
    store: LimitStore,
) -> None:
    answer = await store.reserve(reservation("b", weights=(11, 5)), LEASE)
    (requests, tokens) = answer.rules
    assert (requests.allowed, requests.remaining, requests.reason is not None) == (False, 10, True)
    assert (tokens.allowed, tokens.remaining) == (True, 100)  # it would pass, and took nothing
    fixed = Reservation("c", rules=(RuleCharge(FIXED, "c", 5),))
    assert (await store.reserve(fixed, LEASE)).rules[0].remaining == 0
    again = (await store.reserve(fixed, LEASE)).rules[0]
    assert not again.allowed and again.retry_after is not None and again.retry_after > 0


async def test_a_budget_admits_exactly_what_fits(store: LimitStore) -> None:
    admitted = 0
    for _ in range(12):  # 12 x 9 cents against a budget of one unit: 11 fit (99 cents)
        answer = await store.reserve(
            Reservation("d", budget=BudgetCharge("d", 0, 100 * CENT, 9 * CENT, DAY)), LEASE
        )
        admitted += answer.allowed
    assert admitted == 11
    assert await store.spent("d", 0) == 99 * CENT
    last = await store.reserve(
        Reservation("d", budget=BudgetCharge("d", 0, 100 * CENT, CENT, DAY)), LEASE
    )
    assert last.allowed and last.spent == 100 * CENT  # the last cent fits exactly
    assert await store.spent("d", 1) == 0  # another period starts afresh


async def test_the_slot_cap_holds_and_a_settlement_frees_a_slot(store: LimitStore) -> None:
    answers = [
        await store.reserve(Reservation("e", slot=SlotCharge("e", 3, f"e-{i}")), LEASE)
        for i in range(5)
    ]
    assert [(a.slot_allowed, a.in_flight) for a in answers] == [
        (True, 1),
        (True, 2),
        (True, 3),
        (False, 3),
        (False, 3),
    ]
    await store.settle(Settlement("e", slot=SlotRelease("e", "e-1")))
    assert (
        await store.reserve(Reservation("e", slot=SlotCharge("e", 3, "e-5")), LEASE)
    ).in_flight == 3
    other = await store.reserve(Reservation("f", slot=SlotCharge("f", 1, "f-0")), LEASE)
    assert other.allowed  # the cap is per account


async def test_settle_gives_back_units_settles_the_cost_and_never_goes_below_zero(
    store: LimitStore,
) -> None:
    await store.reserve(reservation("g", weights=(3, 50), cents=30, cap=1, lease="g-1"), LEASE)
    after = await store.settle(
        Settlement(
            "g",
            refunds=(RuleCharge(TOKENS, "g:gpt", 20), RuleCharge(REQUESTS, "g", 3)),
            budget=BudgetSettlement("g", 0, -12 * CENT, DAY),
            slot=SlotRelease("g", "g-1"),
        )
    )
    assert [r.remaining for r in after] == [70, 10]  # in the settlement's order
    assert await store.spent("g", 0) == 18 * CENT
    assert (await store.reserve(Reservation("g", slot=SlotCharge("g", 1, "g-2")), LEASE)).allowed
    await store.settle(Settlement("g", budget=BudgetSettlement("g", 0, 5 * CENT, DAY)))
    assert await store.spent("g", 0) == 23 * CENT  # a cost above the reservation
    await store.settle(Settlement("g", budget=BudgetSettlement("g", 0, -100 * CENT, DAY)))
    assert await store.spent("g", 0) == 0


SHORT_LEASE = 1.0


async def wait_until_free(store: LimitStore, account: str, deadline: float) -> float:
    """Seconds until a slot of ``account`` (cap 1) can be taken again; fails past ``deadline``."""
    started = time.monotonic()
    n = 0
    while time.monotonic() < started + deadline:
        n += 1
        answer = await store.reserve(
            Reservation(account, slot=SlotCharge(account, 1, f"{account}-probe-{n}")), SHORT_LEASE
        )
        if answer.allowed:
            return time.monotonic() - started
        await asyncio.sleep(SHORT_LEASE / 20)
    raise AssertionError(f"the slot was not free within {deadline}s")


@pytest.mark.slow
async def test_a_lease_runs_out_unless_renewed(store: LimitStore) -> None:
    assert (
        await store.reserve(Reservation("h", slot=SlotCharge("h", 1, "h-1")), SHORT_LEASE)
    ).allowed
    assert (
        await store.reserve(Reservation("i", slot=SlotCharge("i", 1, "i-1")), SHORT_LEASE)
    ).allowed
    held = [HeldLease("i", "i", "i-1")]
    renewals_until = time.monotonic() + 3 * SHORT_LEASE
    while time.monotonic() < renewals_until:  # i's holder renews at a third of the lease
        await store.renew(held, SHORT_LEASE)
        assert not (
            await store.reserve(Reservation("i", slot=SlotCharge("i", 1, "i-x")), SHORT_LEASE)
        ).allowed
        await asyncio.sleep(SHORT_LEASE / 3)
    # h was never renewed: free long since; i once its renewals stop, within one lease
    assert await wait_until_free(store, "h", SHORT_LEASE) < SHORT_LEASE
    assert await wait_until_free(store, "i", 2 * SHORT_LEASE) <= SHORT_LEASE + SHORT_LEASE / 2
    await store.renew(held, SHORT_LEASE)  # a renewal after it ran out does not take it back
    assert (
        await store.reserve(Reservation("i", slot=SlotCharge("i", 2, "i-y")), SHORT_LEASE)
    ).in_flight == 2
