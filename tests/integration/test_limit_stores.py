"""The limit store contract, on every store: memory, Redis, PostgreSQL and SQLite.

Each decision is one atomic operation that returns the CONTRACT's numbers; a peek
consumes nothing and a refund gives units back; the store lists the keys it holds for
a rule and forgets them on reset.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from revoctl.core.limits import LimitsConfig, LimitStore, RateLimiter, RateLimitRule
from tests.support.limits import ALL_LIMIT_STORES, Target, close_store, open_store, store_target

pytestmark = pytest.mark.parametrize("kind", ALL_LIMIT_STORES)

RULES = (
    RateLimitRule(name="api", requests=10, window_seconds=60, burst_multiplier=2.0),
    RateLimitRule(name="sliding", requests=10, window_seconds=60, algorithm="sliding_window"),
    RateLimitRule(name="fixed", requests=10, window_seconds=60, algorithm="fixed_window"),
)


@pytest.fixture
def target(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return store_target(kind, request, tmp_path)


@pytest.fixture
async def store(target: Target) -> AsyncIterator[LimitStore]:
    opened, resource = await open_store(target)
    yield opened
    await close_store(opened, resource)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.algorithm.value)
async def test_check_peek_and_refund_move_one_key(store: LimitStore, rule: RateLimitRule) -> None:
    first = await store.apply(rule, "alice", "check", 3)
    assert (first.allowed, first.remaining, first.limit) == (True, rule.capacity - 3, rule.capacity)
    assert first.retry_after is None
    peeked = await store.apply(rule, "alice", "peek", 1)
    assert peeked.remaining == rule.capacity - 3  # a peek consumes nothing
    denied = await store.apply(rule, "alice", "check", rule.capacity)
    assert not denied.allowed and denied.retry_after is not None and denied.retry_after > 0
    assert denied.remaining == rule.capacity - 3  # a denied check consumes nothing
    refunded = await store.apply(rule, "alice", "refund", 3)
    assert refunded.remaining == rule.capacity
    assert (await store.apply(rule, "bob", "check", 1)).remaining == rule.capacity - 1


async def test_scan_lists_the_keys_and_reset_all_removes_them(store: LimitStore) -> None:
    limiter = RateLimiter(LimitsConfig(store=store.kind, rules=RULES), store=store)
    for who in ("a", "b", "c*[x]"):  # glob characters in a key are taken literally
        await limiter.check_rate_limit("api", who, 2)
    await limiter.check_rate_limit("fixed", "a")
    assert [s.key for s in await limiter.inspect("api")] == ["a", "b", "c*[x]"]
    assert [(s.key, s.remaining) for s in await limiter.inspect("fixed")] == [("a", 9)]
    assert await limiter.reset("api") == 3
    assert await limiter.inspect("api") == []
    assert [s.key for s in await limiter.inspect("fixed")] == ["a"]
