"""The three algorithms on an injected clock: exact numbers, and properties no sequence breaks.

Everything runs through `MemoryLimitStore` with a clock the test moves, the same code
that decides for ``store = "memory"`` and (on the database's clock) for ``store = "sql"``.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from revoctl.core.limits import MemoryLimitStore, RateLimitResult, RateLimitRule
from revoctl.core.limits._algorithms import SLOTS


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rule(algorithm: str = "token_bucket", requests: int = 10, window: float = 60.0, burst=1.0):
    return RateLimitRule(
        name="r",
        requests=requests,
        window_seconds=window,
        algorithm=algorithm,
        burst_multiplier=burst,
    )


def store_at(now: float = 1_000_000.0) -> tuple[MemoryLimitStore, Clock]:
    clock = Clock(now)
    return MemoryLimitStore(clock=clock), clock


def check(store: MemoryLimitStore, r: RateLimitRule, weight: int = 1, key: str = "a"):
    return store.apply_now(r, key, "check", weight)


# ---------------------------------------------------------------- token bucket


def test_token_bucket_starts_full_at_floor_of_requests_times_burst() -> None:
    store, _ = store_at()
    r = rule(requests=10, burst=2.55)
    assert r.capacity == 25
    results = [check(store, r) for _ in range(26)]
    assert [x.allowed for x in results] == [True] * 25 + [False]
    assert results[0] == RateLimitResult(True, 24, 25, None, pytest.approx(6.0))


def test_token_bucket_done_when_numbers_20_allowed_5_denied_retry_after_6s() -> None:
    store, _ = store_at()
    r = rule(requests=10, window=60, burst=2.0)
    results = [check(store, r) for _ in range(25)]
    assert sum(x.allowed for x in results) == 20
    last = results[-1]
    assert (last.allowed, last.remaining, last.limit) == (False, 0, 20)
    assert last.retry_after == pytest.approx(6.0)
    assert last.reset_after == pytest.approx(120.0)


def test_token_bucket_refills_at_requests_per_window_and_retry_after_is_exact() -> None:
    store, clock = store_at()
    r = rule(requests=10, window=60, burst=2.0)
    for _ in range(20):
        check(store, r)
    denied = check(store, r, weight=3)
    assert denied.retry_after == pytest.approx(18.0)
    clock.now += 17.999
    assert not check(store, r, weight=3).allowed
    clock.now += 0.001
    allowed = check(store, r, weight=3)
    assert allowed.allowed and allowed.remaining == 0 and allowed.retry_after is None


def test_token_bucket_never_refills_past_capacity() -> None:
    store, clock = store_at()
    r = rule(requests=10, window=60, burst=2.0)
    check(store, r)
    clock.now += 10_000
    assert check(store, r).remaining == 19


def test_token_bucket_remaining_is_the_floor() -> None:
    store, clock = store_at()
    r = rule(requests=10, window=60, burst=1.0)
    for _ in range(10):
        check(store, r)
    clock.now += 9  # 1.5 tokens back
    result = store.apply_now(r, "a", "peek", 1)
    assert result.remaining == 1 and isinstance(result.remaining, int)


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_window", "fixed_window"])
def test_a_denied_check_consumes_nothing(algorithm: str) -> None:
    store, _ = store_at()
    r = rule(algorithm, requests=10)
    check(store, r, weight=8)
    before = store.apply_now(r, "a", "peek", 1)
    denied = check(store, r, weight=5)
    assert not denied.allowed and denied.remaining == before.remaining == 2
    assert store.apply_now(r, "a", "peek", 1) == before
    assert check(store, r, weight=2).allowed


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_window", "fixed_window"])
def test_a_weight_above_the_limit_is_denied_with_a_reason_and_no_retry(algorithm: str) -> None:
    store, _ = store_at()
    r = rule(algorithm, requests=10, burst=2.0)
    result = check(store, r, weight=r.capacity + 1)
    assert not result.allowed
    assert result.retry_after is None
    assert (
        result.reason
        == f"weight {r.capacity + 1} exceeds the limit {r.capacity}: it can never be allowed"
    )
    assert result.remaining == r.capacity
    assert len(store) == 0


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_window", "fixed_window"])
def test_peek_consumes_nothing_and_a_new_key_is_full(algorithm: str) -> None:
    store, _ = store_at()
    r = rule(algorithm, requests=10, burst=2.0)
    for _ in range(3):
        assert store.apply_now(r, "new", "peek", 1) == RateLimitResult(
            True, r.capacity, r.capacity, None, 0.0
        )
    assert len(store) == 0


@pytest.mark.parametrize("algorithm", ["token_bucket", "sliding_window", "fixed_window"])
def test_refund_gives_back_but_never_past_full(algorithm: str) -> None:
    store, _ = store_at(1_000_002.0)
    r = rule(algorithm, requests=10)
    check(store, r, weight=7)
    assert store.apply_now(r, "a", "refund", 5).remaining == 8
    assert store.apply_now(r, "a", "refund", 50).remaining == 10
    assert store.apply_now(r, "a", "peek", 1).reset_after == 0
    assert len(store) == 0  # a full key is the same as no key


def test_a_clock_behind_the_stored_state_gives_no_extra_capacity() -> None:
    store, clock = store_at()
    r = rule(requests=10, window=60)
    for _ in range(10):
        check(store, r)
    clock.now -= 30  # another process's clock, or a replica's
    assert not check(store, r).allowed


# ---------------------------------------------------------------- sliding window


def test_sliding_window_counts_slots_overlapping_the_last_window() -> None:
    slot = 60 / SLOTS
    start = 1_000_000 // slot * slot + slot - 0.001  # the end of a slot
    store, clock = store_at(start)
    r = rule("sliding_window", requests=10, window=60)
    assert sum(check(store, r).allowed for _ in range(12)) == 10
    denied = check(store, r)
    # The units sit in a slot that ends 0.001 s from now; they leave 60 s after it ends.
    assert denied.retry_after == pytest.approx(60.001)
    assert denied.reset_after == pytest.approx(60.001)
    clock.now += 60.0
    assert not check(store, r).allowed
    clock.now += 0.001
    assert check(store, r).allowed


def test_sliding_window_is_never_laxer_than_the_exact_window() -> None:
    store, _ = store_at(1_000_000.0)
    r = rule("sliding_window", requests=10, window=60)
    for _ in range(10):
        check(store, r)
    denied = check(store, r)
    assert 60 <= denied.retry_after <= 60 + 60 / SLOTS


def test_sliding_window_retry_after_frees_the_oldest_slots_first() -> None:
    slot = 60 / SLOTS
    base = 1_000_000 // slot * slot
    store, clock = store_at(base)
    r = rule("sliding_window", requests=10, window=60)
    check(store, r, weight=4)
    clock.now = base + 3 * slot
    check(store, r, weight=6)
    denied = check(store, r, weight=3)
    # The first 4 units (slot 0) leave when slot 11 begins, 11 slots after base.
    assert denied.retry_after == pytest.approx(base + 11 * slot - clock.now)
    clock.now = base + 11 * slot
    assert check(store, r, weight=3).allowed


# ---------------------------------------------------------------- fixed window


def test_fixed_window_is_aligned_to_the_epoch() -> None:
    store, clock = store_at(1_000_030.0)  # 1_000_020 is a multiple of 60
    r = rule("fixed_window", requests=10, window=60)
    assert sum(check(store, r).allowed for _ in range(11)) == 10
    denied = check(store, r)
    assert denied.retry_after == pytest.approx(50.0)
    assert denied.reset_after == pytest.approx(50.0)
    clock.now = 1_000_080.0
    result = check(store, r)
    assert result.allowed and result.remaining == 9


# ---------------------------------------------------------------- memory store


def test_memory_store_stays_bounded_with_many_keys_that_run_out() -> None:
    store, clock = store_at()
    r = rule("fixed_window", requests=5, window=1)
    for i in range(20_000):
        clock.now += 0.001
        check(store, r, key=f"k{i}")
    # Keys live for at most one second: about 1000 at a time, never the 20000 written.
    assert len(store) < 2500


async def test_memory_store_keys_and_reset() -> None:
    store, _ = store_at()
    r = rule()
    for key in ("a", "b", "c"):
        check(store, r, key=key)
    assert sorted(await store.keys(r)) == ["a", "b", "c"]
    assert await store.reset(r, "b") == 1
    assert sorted(await store.keys(r)) == ["a", "c"]
    assert await store.reset(r, None) == 2
    assert await store.keys(r) == []


# ---------------------------------------------------------------- properties

Step = tuple[float, str, int]
steps = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=20, allow_nan=False),
        st.sampled_from(["check", "check", "check", "refund"]),
        st.integers(min_value=1, max_value=6),
    ),
    min_size=1,
    max_size=120,
)


def replay(r: RateLimitRule, sequence: list[Step]):
    store, clock = store_at(1_000_000.0)
    admitted: list[tuple[float, int]] = []
    refunded: list[tuple[float, int]] = []
    for dt, op, weight in sequence:
        clock.now += dt
        before = store.apply_now(r, "a", "peek", 1).remaining
        result = store.apply_now(r, "a", op, weight)  # type: ignore[arg-type]
        if op == "refund":
            refunded.append((clock.now, weight))
        elif result.allowed:
            admitted.append((clock.now, weight))
        else:
            assert store.apply_now(r, "a", "peek", 1).remaining == before  # consumed nothing
            assert weight > r.capacity or result.retry_after is not None
        assert 0 <= result.remaining <= r.capacity
    return admitted, refunded


def net(events_in: list[tuple[float, int]], lo: float, hi: float, closed_low: bool) -> int:
    return sum(w for t, w in events_in if (lo <= t if closed_low else lo < t) and t <= hi)


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(sequence=steps, requests=st.integers(1, 12), window=st.sampled_from([5.0, 30.0, 60.0]))
def test_sliding_window_never_admits_more_than_requests_in_any_window(
    sequence: list[Step], requests: int, window: float
) -> None:
    r = rule("sliding_window", requests=requests, window=window)
    admitted, refunded = replay(r, sequence)
    for end, _ in admitted:  # the fullest windows end at an admission
        used = net(admitted, end - window, end, False) - net(refunded, end - window, end, False)
        assert used <= requests


@PROPERTY
@given(sequence=steps, requests=st.integers(1, 12), window=st.sampled_from([5.0, 30.0, 60.0]))
def test_fixed_window_never_admits_more_than_requests_per_window(
    sequence: list[Step], requests: int, window: float
) -> None:
    r = rule("fixed_window", requests=requests, window=window)
    admitted, refunded = replay(r, sequence)
    for t, _ in admitted:
        lo = math.floor(t / window) * window
        hi = lo + window - 1e-9
        assert net(admitted, lo, hi, True) - net(refunded, lo, hi, True) <= requests


@PROPERTY
@given(
    sequence=steps,
    requests=st.integers(1, 12),
    window=st.sampled_from([5.0, 30.0, 60.0]),
    burst=st.sampled_from([1.0, 1.5, 2.0, 3.0]),
)
def test_token_bucket_never_admits_more_than_capacity_plus_refill(
    sequence: list[Step], requests: int, window: float, burst: float
) -> None:
    r = rule("token_bucket", requests=requests, window=window, burst=burst)
    admitted, refunded = replay(r, sequence)
    rate = requests / window
    for i, (start, _) in enumerate(admitted):
        for end, _ in admitted[i:]:
            used = net(admitted, start, end, True) - net(refunded, start, end, True)
            assert used <= r.capacity + rate * (end - start) + 1e-6


@PROPERTY
@given(sequence=steps)
def test_without_refunds_no_window_ever_holds_more_than_the_limit(sequence: list[Step]) -> None:
    checks_only = [(dt, "check", w) for dt, _, w in sequence]
    for algorithm in ("sliding_window", "fixed_window"):
        r = rule(algorithm, requests=8, window=30.0)
        admitted, _ = replay(r, checks_only)
        for end, _ in admitted:
            assert net(admitted, end - 30.0, end, False) <= 8 or algorithm == "fixed_window"
            lo = math.floor(end / 30.0) * 30.0
            assert algorithm == "sliding_window" or net(admitted, lo, end, True) <= 8
