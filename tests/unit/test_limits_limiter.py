"""`RateLimiter` over a store that can be made to fail: failure modes, one probe at a time,
a busy pool answered call by call, counters, the event log, health. Fast fakes here; the
same behaviour against a real Redis that is stopped and restarted, or whose pool is held
busy, is in ``tests/integration/test_limits_faults.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from revoctl.core.errors import (
    BackendUnavailableError,
    NotFoundError,
    PoolExhaustedError,
    UsageError,
)
from revoctl.core.limits import (
    LimitsConfig,
    MemoryLimitStore,
    RateLimiter,
    RateLimitEvent,
    RateLimitLogWriter,
    RateLimitRule,
)
from revoctl.core.limits.base import Op, RateLimitResult

RULES = (
    RateLimitRule(name="api", requests=10, window_seconds=60, burst_multiplier=2.0),
    RateLimitRule(name="everyone", requests=3, window_seconds=60, scope="global"),
    RateLimitRule(name="off", requests=1, window_seconds=60, enabled=False),
)


class FlakyStore(MemoryLimitStore):
    """A memory store that raises while ``down`` (unreachable) or ``busy`` (no pooled
    connection came free), and counts the calls it was given."""

    kind = "flaky"
    remote = True

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.busy = False
        self.calls = 0
        self.delay = 0.0

    async def apply(self, rule: RateLimitRule, key: str, op: Op, weight: int) -> RateLimitResult:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise BackendUnavailableError("cannot reach the flaky store: connection refused")
        if self.busy:
            raise PoolExhaustedError("no free connection to the flaky store within 1s")
        return await super().apply(rule, key, op, weight)

    async def ping(self) -> None:
        if self.down:
            raise BackendUnavailableError("cannot reach the flaky store: connection refused")


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def limiter(mode: str = "open", **extra: object) -> tuple[RateLimiter, FlakyStore, Clock]:
    store, clock = FlakyStore(), Clock()
    config = LimitsConfig(
        store="memory", failure_mode=mode, rules=RULES, probe_interval_seconds=1.0, **extra
    )
    return RateLimiter(config, store=store, clock=clock), store, clock


async def test_check_by_name_and_the_contract_numbers() -> None:
    lim, _, _ = limiter()
    results = [await lim.check_rate_limit("api", "alice") for _ in range(21)]
    assert [r.allowed for r in results].count(True) == 20
    assert results[-1].retry_after == pytest.approx(6.0, abs=0.1)
    assert results[0].as_dict().keys() == {
        "allowed",
        "remaining",
        "limit",
        "retry_after",
        "reset_after",
    }
    zero = {"allowed": 0, "denied": 0, "failed_open": 0, "failed_closed": 0}
    assert lim.decisions() == {  # every configured rule, so that metrics start at zero
        "api": {**zero, "allowed": 20, "denied": 1},
        "everyone": zero,
        "off": zero,
    }


async def test_unknown_rule_bad_key_and_bad_weight_raise() -> None:
    lim, store, _ = limiter()
    with pytest.raises(NotFoundError, match="no rate-limit rule named 'nope'"):
        await lim.check_rate_limit("nope", "a")
    with pytest.raises(UsageError):
        await lim.check_rate_limit("api", "")
    with pytest.raises(UsageError):
        await lim.check_rate_limit("api", "x" * 256)
    for weight in (0, -1, 1.5, True):
        with pytest.raises(UsageError):
            await lim.check_rate_limit("api", "a", weight)  # type: ignore[arg-type]
    assert store.calls == 0


async def test_a_global_rule_has_one_key_and_a_disabled_rule_admits_without_the_store() -> None:
    lim, store, _ = limiter()
    for who in ("a", "b", "c"):
        assert (await lim.check_rate_limit("everyone", who)).allowed
    assert not (await lim.check_rate_limit("everyone", "d")).allowed
    assert await store.keys(RULES[1]) == ["*"]
    calls = store.calls
    assert (await lim.check_rate_limit("off", "a")).allowed
    assert store.calls == calls


@pytest.mark.parametrize(("mode", "allowed"), [("open", True), ("closed", False)])
async def test_failure_mode_answers_never_raises_and_counts(mode: str, allowed: bool) -> None:
    lim, store, _ = limiter(mode)
    store.down = True
    result = await lim.check_rate_limit("api", "alice")
    assert result.allowed is allowed
    assert "store unavailable" in (result.reason or "")
    assert (result.retry_after is None) is allowed
    assert lim.decisions()["api"][f"failed_{mode}"] == 1
    assert await lim.refund("api", "alice", 1) is None  # never raises either
    report = await lim.health_check()
    assert report["status"] == "degraded"
    assert f"failure_mode {mode} answers for it" in report["reason"]


async def test_while_down_one_probe_per_interval_and_back_at_once() -> None:
    lim, store, clock = limiter()
    store.down = True
    await lim.check_rate_limit("api", "a")
    assert store.calls == 1
    for _ in range(50):  # within the interval: answered without touching the store
        await lim.check_rate_limit("api", "a")
    assert store.calls == 1
    clock.now += 1.0
    store.down = False
    result = await lim.check_rate_limit("api", "a")  # the probe, which succeeds
    assert store.calls == 2 and result.reason is None
    for _ in range(5):
        await lim.check_rate_limit("api", "a")
    assert store.calls == 7


@pytest.mark.parametrize(("mode", "allowed"), [("open", True), ("closed", False)])
async def test_a_busy_pool_is_answered_for_that_call_only_and_the_store_stays_up(
    mode: str, allowed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    lim, store, _ = limiter(mode)
    store.busy = True
    with caplog.at_level(logging.WARNING, logger="revoctl.limits"):
        answers = [await lim.check_rate_limit("api", "a") for _ in range(3)]
    assert store.calls == 3  # every call went to the store: none was cut off as "down"
    assert all(r.allowed is allowed for r in answers)
    assert all((r.reason or "").startswith("store busy (no free connection") for r in answers)
    assert lim.decisions()["api"][f"failed_{mode}"] == 3
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1, warnings  # one for the burst, and no "store failing"
    assert warnings[0].startswith("rate-limit store busy: no free connection")
    store.busy = False
    result = await lim.check_rate_limit("api", "a")  # the very next call: the store answers
    assert store.calls == 4 and result.reason is None and result.allowed
    report = await lim.health_check()
    assert report["status"] == "healthy" and report["store_failures"] == 0
    assert report["pool_waits_expired"] == 3
    assert report["pool_wait_seconds"] == lim.config.timeout_seconds / 2


async def test_a_busy_pool_is_not_an_outage_but_an_unreachable_store_is() -> None:
    lim, store, clock = limiter()
    store.busy = True
    await lim.check_rate_limit("api", "a")
    store.busy, store.down = False, True
    assert "store unavailable" in ((await lim.check_rate_limit("api", "a")).reason or "")
    calls = store.calls
    store.down = False  # back, but the limiter waits for its probe interval to try it
    assert "store unavailable" in ((await lim.check_rate_limit("api", "a")).reason or "")
    assert store.calls == calls
    clock.now += 1.0
    assert (await lim.check_rate_limit("api", "a")).reason is None


async def test_concurrent_callers_send_a_single_probe() -> None:
    lim, store, clock = limiter()
    store.down = True
    await lim.check_rate_limit("api", "a")
    clock.now += 1.0
    store.delay = 0.05
    results = await asyncio.gather(*(lim.check_rate_limit("api", "a") for _ in range(40)))
    assert store.calls == 2  # the first outage call, then one probe for all 40
    assert all(r.allowed for r in results)


async def test_a_hung_store_is_cut_at_timeout_seconds() -> None:
    timeout = 0.05
    lim, store, _ = limiter(timeout_seconds=timeout)
    store.delay = timeout * 100  # hangs far past the timeout
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await lim.check_rate_limit("api", "a")
    assert loop.time() - started < timeout * 20  # the timeout, plus room for a busy machine
    assert result.allowed and "no answer within 0.05s" in (result.reason or "")


async def test_operator_calls_are_strict() -> None:
    lim, store, _ = limiter()
    store.down = True
    with pytest.raises(BackendUnavailableError):
        await lim.peek("api", "a")
    with pytest.raises(BackendUnavailableError):
        await lim.run_checks("api", "a", 3)


async def test_current_reads_without_consuming_and_never_raises_for_the_store() -> None:
    """The runtime's read, for the headers of a response that charged nothing: fail-soft,
    where `peek` is strict, and no probe wasted while the store is down."""
    lim, store, clock = limiter()
    await lim.check_rate_limit("api", "a", 5)
    for _ in range(3):
        seen = await lim.current("api", "a")
        assert seen is not None and (seen.remaining, seen.limit) == (15, 20)
    assert lim.decisions()["api"]["allowed"] == 1  # reads are not decisions
    off = await lim.current("off", "a")
    assert off is not None and off.allowed
    store.down = True
    assert await lim.current("api", "a") is None
    calls = store.calls
    assert await lim.current("api", "a") is None  # down, within the interval: not asked
    assert store.calls == calls
    clock.now += 1.0
    store.down = False
    seen = await lim.current("api", "a")  # the probe, which succeeds
    assert seen is not None and seen.remaining == 15
    with pytest.raises(UsageError):
        await lim.current("api", "x" * 256)


async def test_run_checks_inspect_reset() -> None:
    lim, _, _ = limiter()
    run = await lim.run_checks("api", "a", count=25)
    assert (run.checks, run.allowed, run.denied, run.last.allowed) == (25, 20, 5, False)
    await lim.run_checks("api", "b", count=2, weight=3)
    seen = {s.key: s for s in await lim.inspect("api")}
    assert set(seen) == {"a", "b"}
    assert (seen["b"].remaining, seen["b"].limit, seen["b"].algorithm) == (14, 20, "token_bucket")
    assert [s.remaining for s in await lim.inspect("api", "b")] == [14]
    assert [s.remaining for s in await lim.inspect("api", "b")] == [14]  # consumed nothing
    assert await lim.reset("api", "a") == 1
    assert [s.key for s in await lim.inspect("api")] == ["b"]
    assert await lim.reset("api") == 1


class Sink:
    def __init__(self) -> None:
        self.batches: list[list[RateLimitEvent]] = []
        self.fail = False

    async def __call__(self, events: Sequence[RateLimitEvent]) -> None:
        if self.fail:
            raise OSError("log database down")
        self.batches.append(list(events))


async def test_denials_and_failures_are_logged_in_batches_and_flushed_on_close() -> None:
    sink = Sink()
    log = RateLimitLogWriter(sink, batch_size=4, interval=60)
    store = FlakyStore()
    lim = RateLimiter(LimitsConfig(store="memory", rules=RULES), store=store, log=log)
    for _ in range(25):
        await lim.check_rate_limit("api", "a")
    await asyncio.sleep(0)  # the writer task runs when the decisions yield
    assert sum(map(len, sink.batches)) == 5  # a full batch woke the writer before close
    store.down = True
    await lim.check_rate_limit("api", "b")
    await lim.close()
    events = [e for batch in sink.batches for e in batch]
    assert [e.event for e in events] == ["denied"] * 5 + ["store_failure"]
    assert events[0].rule == "api" and events[0].key == "a" and not events[0].allowed
    assert events[-1].allowed and "store unavailable" in (events[-1].reason or "")


async def test_the_event_buffer_is_bounded_and_a_failing_log_never_fails_a_decision(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from revoctl.core.limits import _limiter

    monkeypatch.setattr(_limiter, "CLOSE_FLUSH_SECONDS", 0.2)  # how long close waits for it
    sink = Sink()
    sink.fail = True
    log = RateLimitLogWriter(sink, capacity=10, batch_size=1000, interval=60)
    lim = RateLimiter(LimitsConfig(store="memory", rules=RULES), store=FlakyStore(), log=log)
    for _ in range(100):
        await lim.check_rate_limit("everyone", None)
    assert log.stats()["buffered"] == 10 and log.stats()["dropped"] == 87
    await lim.close()
    assert log.stats() == {
        "buffered": 0,
        "oldest_seconds": None,
        "written": 0,
        "dropped": 97,
        "drops": {"buffer_full": 87, "rejected": 0, "shutdown": 10},
    }
