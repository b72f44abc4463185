"""`RedisLimitStore` reservations against real servers: every rule, the budget and the slot of
one caller in one EVALSHA, all or nothing; settled in one more; leases that run out unless
renewed; a call sent again on a cluster decides once (exactness across processes:
``test_limits_redis_exact_reservations.py``).

The shared server (db 13, a per-test key prefix) is used where nothing else is disturbed;
command counts get a private ``redis-server`` or the tests' own cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from revoctl.core.limits import RateLimitRule, RedisLimitStore
from revoctl.core.limits.reservations import (
    BudgetCharge,
    BudgetSettlement,
    HeldLease,
    Reservation,
    RuleCharge,
    Settlement,
    SlotCharge,
    SlotRelease,
    hash_tag,
)
from revoctl.core.redis import RedisConfig, open_redis
from tests.support.redis_servers import (
    CommandCounter,
    RedisClusterServers,
    free_port,
    private_server,
    require_binaries,
)

pytestmark = pytest.mark.redis

RULES = (
    RateLimitRule(name="api", requests=10, window_seconds=60, burst_multiplier=2.0),
    RateLimitRule(name="sliding", requests=10, window_seconds=60, algorithm="sliding_window"),
    RateLimitRule(name="fixed", requests=10, window_seconds=60, algorithm="fixed_window"),
)
GLOBAL = RateLimitRule(name="everyone", requests=100, window_seconds=60, scope="global")
KEY = "team-a:alice"
TAG = "team-a"
BUDGET = 100
LEASE = 30.0


async def open_store(url: str, prefix: str, *, cluster: bool = False) -> RedisLimitStore:
    config = RedisConfig(url=url, cluster=cluster)
    return RedisLimitStore(await open_redis(config), config, prefix=prefix)


@pytest.fixture
async def store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisLimitStore]:
    opened = await open_store(redis_url, redis_prefix)
    yield opened
    await opened.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    require_binaries()
    ports: list[int] = []
    for _ in range(3):
        ports.append(free_port((ports[-1] + 1) if ports else 7150, 7199))
    with RedisClusterServers(ports, tmp_path_factory.mktemp("cluster")) as servers:
        yield servers


def reservation(
    weight: int = 3, amount: int = 40, cap: int = 2, lease: str = "lease-1"
) -> Reservation:
    return Reservation(
        TAG,
        tuple(RuleCharge(rule, KEY, weight) for rule in RULES),
        BudgetCharge(TAG, 0, BUDGET, amount, keep_seconds=600),
        SlotCharge(TAG, cap, lease),
    )


async def remaining(store: RedisLimitStore) -> list[int]:
    return [(await store.apply(rule, KEY, "peek", 1)).remaining for rule in RULES]


async def test_a_reservation_takes_every_part_and_answers_each(store: RedisLimitStore) -> None:
    reserved = await store.reserve(reservation(), LEASE)
    assert reserved.allowed and reserved.stored
    assert [(r.allowed, r.remaining, r.limit) for r in reserved.rules] == [
        (True, 17, 20),
        (True, 7, 10),
        (True, 7, 10),
    ]
    assert (reserved.spent, reserved.in_flight) == (40, 1)
    assert await remaining(store) == [17, 7, 7]
    assert await store.spent(TAG, 0) == 40
    assert await store.spent(TAG, 1) == 0  # another period: never charged


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.algorithm.value)
async def test_a_reserved_rule_answers_as_its_own_check_would(
    store: RedisLimitStore, rule: RateLimitRule
) -> None:
    """The reservation runs each algorithm's own Lua function: the numbers of a check."""
    for weight in (1, 4, 2, 30, 6, 5, 1):
        alone = await store.apply(rule, "team-b:check", "check", weight)
        charge = RuleCharge(rule, "team-b:reserve", weight)
        reserved = (await store.reserve(Reservation("team-b", (charge,)), LEASE)).rules[0]
        assert reserved[:3] == alone[:3] and reserved.reason == alone.reason
        assert reserved.retry_after == pytest.approx(alone.retry_after, abs=0.5)
        assert reserved.reset_after == pytest.approx(alone.reset_after, abs=0.5)


@pytest.mark.parametrize("denier", ["api", "sliding", "fixed", "budget", "slot"])
async def test_a_denial_by_any_part_takes_nothing_from_the_others(
    store: RedisLimitStore, denier: str
) -> None:
    """Each part is set up to deny alone; the others would allow, and keep what they had."""
    first = await store.reserve(reservation(lease="held"), LEASE)
    assert first.allowed
    rule = next((r for r in RULES if r.name == denier), None)
    if rule is not None:  # take the rule down to 2 left
        await store.apply(rule, KEY, "check", rule.capacity - 3 - 2)
    before = await remaining(store)
    amount = BUDGET - 40 + 1 if denier == "budget" else 10
    cap = 1 if denier == "slot" else 2

    denied = await store.reserve(reservation(amount=amount, cap=cap, lease="new"), LEASE)

    assert not denied.allowed
    assert [r.allowed for r in denied.rules] == [r.name != denier for r in RULES]
    assert [r.remaining for r in denied.rules] == before  # as found, for every rule
    assert (denied.budget_allowed, denied.spent) == (denier != "budget", 40)
    assert (denied.slot_allowed, denied.in_flight) == (denier != "slot", 1)
    assert await remaining(store) == before
    assert await store.spent(TAG, 0) == 40
    slots = store.layout.slots_key(TAG)
    assert await store.client.zrange(slots, 0, -1) == [b"held"]


async def test_a_rule_too_heavy_is_denied_with_its_reason_and_nothing_is_taken(
    store: RedisLimitStore,
) -> None:
    denied = await store.reserve(reservation(weight=11), LEASE)
    assert [r.reason is not None for r in denied.rules] == [False, True, True]
    assert denied.rules[1].reason == "weight 11 exceeds the limit 10: it can never be allowed"
    assert await remaining(store) == [20, 10, 10] and await store.spent(TAG, 0) == 0


async def test_one_rule_twice_is_charged_twice(store: RedisLimitStore) -> None:
    """A rule listed in two roles of one request (e.g. request_rule and token_rule)."""
    twice = Reservation(TAG, (RuleCharge(RULES[1], KEY, 4), RuleCharge(RULES[1], KEY, 5)))
    reserved = await store.reserve(twice, LEASE)
    assert reserved.allowed and [r.remaining for r in reserved.rules] == [1, 1]
    assert not (await store.reserve(twice, LEASE)).allowed  # 9 more do not fit in 1


@pytest.mark.parametrize("part", ["rule", "budget", "slot"])
async def test_a_part_under_another_tag_is_refused_before_it_is_sent(
    store: RedisLimitStore, part: str
) -> None:
    """On a cluster it would span two slots; on one node it is refused all the same."""
    other = Reservation(
        TAG,
        (RuleCharge(RULES[0], "team-b:alice" if part == "rule" else KEY, 1),),
        BudgetCharge("team-b" if part == "budget" else TAG, 0, BUDGET, 1, keep_seconds=600),
        SlotCharge("team-b" if part == "slot" else TAG, 1, "lease"),
    )
    with pytest.raises(ValueError, match="'team-b', not the call's 'team-a'"):
        await store.reserve(other, LEASE)
    assert await remaining(store) == [20, 10, 10]


async def test_a_settlement_refunds_corrects_the_budget_and_frees_the_slot(
    store: RedisLimitStore,
) -> None:
    assert (await store.reserve(reservation(cap=1), LEASE)).allowed
    assert not (await store.reserve(reservation(cap=1, lease="other"), LEASE)).slot_allowed
    settlement = Settlement(
        TAG,
        (RuleCharge(RULES[0], KEY, 2), RuleCharge(RULES[2], KEY, 3)),
        BudgetSettlement(TAG, 0, -15, keep_seconds=600),
        SlotRelease(TAG, "lease-1"),
    )
    settled = await store.settle(settlement)
    assert [(r.allowed, r.remaining) for r in settled] == [(True, 19), (True, 10)]
    assert await remaining(store) == [19, 7, 10]
    assert await store.spent(TAG, 0) == 25
    again = await store.reserve(reservation(cap=1, lease="other"), LEASE)
    assert again.allowed and again.in_flight == 1  # the slot was free again
    below = Settlement(TAG, budget=BudgetSettlement(TAG, 0, -1000, keep_seconds=600))
    assert await store.settle(below) == []
    assert await store.spent(TAG, 0) == 0  # never below 0


async def test_budget_and_slots_expire_on_their_own(store: RedisLimitStore) -> None:
    await store.reserve(reservation(), LEASE)
    admin = store.client
    assert 0 < await admin.pttl(store.layout.budget_key(TAG, 0)) <= 600_000
    assert 0 < await admin.pttl(store.layout.slots_key(TAG)) <= LEASE * 1000 + 1000


async def test_keys_inspect_and_reset_find_what_a_reservation_filled(
    store: RedisLimitStore,
) -> None:
    """Keys with ``:``, braces and glob characters read back as they were; a global rule's
    key is its own tag."""
    odd = ("team-a:bob", "t{x}:*[y]?", "{}:", "a}:api:tb:{b")
    for key in odd:
        charges = (RuleCharge(RULES[0], key, 1), RuleCharge(GLOBAL, key, 1))
        for charge in charges:
            tagged = Reservation(hash_tag(charge.rule, key), (charge,))
            assert (await store.reserve(tagged, LEASE)).allowed
    assert await store.keys(RULES[0]) == sorted(odd)
    assert await store.keys(GLOBAL) == sorted(odd)
    assert await store.keys(RULES[1]) == []
    for key in odd:
        assert (await store.apply(RULES[0], key, "peek", 1)).remaining == 19
    assert await store.reset(RULES[0], "t{x}:*[y]?") == 1
    assert await store.reset(RULES[0], None) == 3
    assert await store.keys(GLOBAL) == sorted(odd)


async def test_one_evalsha_per_reserve_and_per_settle() -> None:
    with private_server() as server:
        store = await open_store(server.url, "count:")
        try:
            await store.reserve(reservation(), LEASE)  # connection set-up, the first load
            await store.settle(Settlement(TAG, slot=SlotRelease(TAG, "lease-1")))
            counter = CommandCounter(server.port)
            for i in range(20):
                lease = f"l{i}"
                await store.reserve(reservation(weight=1, amount=1, cap=100, lease=lease), LEASE)
                done = Settlement(
                    TAG,
                    (RuleCharge(RULES[0], KEY, 1),),
                    BudgetSettlement(TAG, 0, -1, keep_seconds=600),
                    SlotRelease(TAG, lease),
                )
                await store.settle(done)
            assert counter.finish() == {"EVALSHA": 40}
        finally:
            await store.close()


@pytest.mark.slow
async def test_on_a_cluster_one_evalsha_each_and_a_call_sent_again_decides_once(
    cluster: RedisClusterServers,
) -> None:
    store = await open_store(cluster.url, "cluster-count:", cluster=True)
    try:
        await store.reserve(reservation(), LEASE)  # topology, connections, the first load
        await store.settle(Settlement(TAG, slot=SlotRelease(TAG, "lease-1")))
        counters = [CommandCounter(node.port) for node in cluster.nodes]
        for i in range(10):
            await store.reserve(reservation(weight=1, amount=1, cap=100, lease=f"l{i}"), LEASE)
            await store.settle(Settlement(TAG, slot=SlotRelease(TAG, f"l{i}")))
        counts = [counter.finish() for counter in counters]
        assert sorted(counts, key=len) == [{}, {}, {"EVALSHA": 20}]  # on the tag's node

        spent = await store.spent(TAG, 0)
        one = Reservation(TAG, budget=BudgetCharge(TAG, 0, BUDGET, 1, keep_seconds=600))
        keys, args, _ = store._calls_of.reservation(one, LEASE)
        receipt = store.layout.receipt_key(TAG, "a-lost-reply")
        first = await store._reserve(keys=[*keys, receipt], args=args)
        again = await store._reserve(keys=[*keys, receipt], args=args)  # the client's resend
        assert again == first == f"1 {spent + 1}".encode()
        assert await store.spent(TAG, 0) == spent + 1  # charged once
        back = Settlement(TAG, budget=BudgetSettlement(TAG, 0, -1, keep_seconds=600))
        keys, args = store._calls_of.settlement(back)
        receipt = store.layout.receipt_key(TAG, "another-lost-reply")
        for _ in range(2):
            await store._settle(keys=[*keys, receipt], args=args)
        assert await store.spent(TAG, 0) == spent  # settled once

        for account in (TAG, "team-z"):  # two slots, on two nodes
            taken = Reservation(account, slot=SlotCharge(account, 5, "renewed"))
            assert (await store.reserve(taken, LEASE)).allowed
        held = [HeldLease(account, account, "renewed") for account in (TAG, "team-z")]
        scores = [
            await store.client.zscore(store.layout.slots_key(a), "renewed") for a in (TAG, "team-z")
        ]
        await store.renew(held, LEASE * 2)
        for account, before in zip((TAG, "team-z"), scores, strict=True):
            after = await store.client.zscore(store.layout.slots_key(account), "renewed")
            assert after >= before + LEASE * 1000 - 1000  # now + twice the lease
    finally:
        await store.close()


@pytest.mark.slow
async def test_a_lease_runs_out_unless_renewed(store: RedisLimitStore) -> None:
    """Two leases of a short ``lease_seconds`` fill a cap of 2; the holder renews one of them
    (as its background renewal would, more often than the lease runs out) and not the other:
    the other's slot is free after the lease, the renewed one's is not, and once renewals
    stop it is free too. A released lease is not brought back by a renewal."""
    lease = 1.0
    deadline = 3 * lease + 5  # the wait for a lease to run out: the lease, plus slack

    def slot(name: str) -> Reservation:
        return Reservation(TAG, slot=SlotCharge(TAG, 2, name))

    async def until_admitted(name: str, *, renew: list[HeldLease]) -> float:
        start = time.monotonic()
        while time.monotonic() - start < deadline:
            if renew:
                await store.renew(renew, lease)
            if (await store.reserve(slot(name), lease)).allowed:
                return time.monotonic() - start
            await asyncio.sleep(lease / 20)
        raise AssertionError(f"{name} was not admitted within {deadline} s")

    renewed = [HeldLease(TAG, TAG, "renewed")]
    assert (await store.reserve(slot("renewed"), lease)).allowed
    assert (await store.reserve(slot("forgotten"), lease)).allowed
    assert not (await store.reserve(slot("third"), lease)).allowed
    await until_admitted("third", renew=renewed)  # "forgotten" ran out
    await store.renew(renewed, lease)
    assert not (await store.reserve(slot("fourth"), lease)).slot_allowed  # "renewed" is held
    waited = await until_admitted("fourth", renew=[])  # renewals stopped
    assert waited >= lease / 2  # it was still held until it ran out
    await store.settle(Settlement(TAG, slot=SlotRelease(TAG, "fourth")))
    await store.renew([HeldLease(TAG, TAG, "fourth")], lease)
    members = await store.client.zrange(store.layout.slots_key(TAG), 0, -1)
    assert b"fourth" not in members
