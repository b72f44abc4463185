"""`CircuitBreaker` in one process: the state machine on an injected clock, the trip rules,
timeouts, slow calls, which errors count, fallbacks, the decorator, sync calls."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from revoctl.core import CircuitBreaker, CircuitBreakerConfig, CircuitOpenError
from revoctl.core.breakers import TransitionEvent, default_is_failure, http_status
from revoctl.core.errors import CheckFailedError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class HTTPError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status


class Response:
    def __init__(self, status: int) -> None:
        self.status_code = status


class WrappedHTTPError(Exception):
    """Like httpx.HTTPStatusError: the status is on ``.response``."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.response = Response(status)


def breaker(clock: FakeClock | None = None, **settings: Any) -> CircuitBreaker:
    settings.setdefault("timeout", 0)
    config = CircuitBreakerConfig(name="svc", **settings)
    return CircuitBreaker(config, clock=clock or time.monotonic)


async def ok(value: object = "ok") -> object:
    return value


async def fail(exc: BaseException | None = None) -> None:
    raise exc or RuntimeError("provider down")


async def failures(b: CircuitBreaker, count: int, exc: BaseException | None = None) -> None:
    for _ in range(count):
        with pytest.raises(type(exc) if exc else RuntimeError):
            await b.call(fail, exc)


def test_circuit_open_error_is_a_failed_check_exit_1() -> None:
    error = CircuitOpenError("openai_api", "open", retry_after=3.0, reason="down")
    assert isinstance(error, CheckFailedError) and error.exit_code == 1
    assert str(error) == "circuit breaker 'openai_api' is open: down"


async def test_consecutive_failures_open_it_and_calls_are_then_refused_unsent() -> None:
    clock = FakeClock()
    b = breaker(clock, failure_threshold=3, recovery_timeout=30)
    await failures(b, 2)
    assert b.state.name == "closed"
    assert await b.call(ok) == "ok"  # a success ends the run of failures
    await failures(b, 2)
    assert b.state.name == "closed"
    await failures(b, 1)
    assert b.state.name == "open"

    sent = []

    async def record() -> None:
        sent.append(1)

    with pytest.raises(CircuitOpenError) as refused:
        await b.call(record)
    assert sent == []
    assert refused.value.state == "open" and refused.value.retry_after == 30
    assert "3 consecutive failures" in (refused.value.reason or "")
    assert b.stats()["rejections"] == 1


async def test_failure_rate_over_the_window_opens_it_once_minimum_calls_were_made() -> None:
    b = breaker(failure_threshold=100, failure_rate_threshold=50, window_size=10, minimum_calls=6)
    for _ in range(2):  # fail, succeed: 50 % but fewer than 6 calls
        await failures(b, 1)
        await b.call(ok)
    assert b.state.name == "closed"
    await failures(b, 1)
    await b.call(ok)
    assert b.state.name == "closed"  # 3 of 6 failed is 50 %, but it was a success that made 6
    await failures(b, 1)
    assert b.state.name == "open"
    assert "4 of the last 7 calls failed" in b.transitions[0].cause


async def test_the_window_forgets_failures_older_than_window_size_calls() -> None:
    b = breaker(failure_threshold=100, failure_rate_threshold=50, window_size=4, minimum_calls=4)
    await failures(b, 1)
    for _ in range(3):
        await b.call(ok)
    await failures(b, 1)  # the first failure left the window: 1 of 4
    assert b.state.name == "closed"
    assert b.state.failure_count == 1


async def test_zero_failure_rate_turns_the_rate_rule_off() -> None:
    b = breaker(failure_threshold=100, failure_rate_threshold=0, window_size=4, minimum_calls=1)
    for _ in range(10):
        await failures(b, 1)
        await b.call(ok)
    assert b.state.name == "closed"


async def test_half_open_lets_success_threshold_trials_through_and_closes() -> None:
    clock = FakeClock()
    b = breaker(clock, failure_threshold=1, recovery_timeout=10, success_threshold=2)
    await failures(b, 1)
    clock.advance(9.9)
    with pytest.raises(CircuitOpenError):
        await b.call(ok)
    clock.advance(0.1)

    gate = asyncio.Event()

    async def slow_trial() -> str:
        await gate.wait()
        return "trial"

    trials = [asyncio.create_task(b.call(slow_trial)) for _ in range(2)]
    await asyncio.sleep(0)
    assert b.state.name == "half_open"
    with pytest.raises(CircuitOpenError) as refused:  # both permits are out
        await b.call(ok)
    assert refused.value.state == "half_open"
    gate.set()
    assert await asyncio.gather(*trials) == ["trial", "trial"]
    assert b.state.name == "closed"
    assert [(e.from_state, e.to_state) for e in reversed(b.transitions)] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert b.transitions[0].cause == "2 trial calls succeeded"


async def test_one_failed_trial_opens_it_again_for_a_full_recovery_timeout() -> None:
    clock = FakeClock()
    b = breaker(clock, failure_threshold=1, recovery_timeout=10, success_threshold=3)
    await failures(b, 1)
    clock.advance(10)
    await b.call(ok)
    await failures(b, 1)
    assert b.state.name == "open"
    assert b.transitions[0].cause.startswith("trial call failed: RuntimeError: provider down")
    clock.advance(9)
    with pytest.raises(CircuitOpenError):
        await b.call(ok)


async def test_every_transition_is_recorded_with_its_cause_and_emitted() -> None:
    clock = FakeClock()
    b = breaker(clock, failure_threshold=2, recovery_timeout=5, success_threshold=1)
    seen: list[TransitionEvent] = []
    b.add_listener(seen.append)
    await failures(b, 2)
    clock.advance(5)
    await b.call(ok)
    assert [(e.from_state, e.to_state, e.source) for e in seen] == [
        ("closed", "open", "local"),
        ("open", "half_open", "local"),
        ("half_open", "closed", "local"),
    ]
    assert seen[0].cause == "2 consecutive failures (last: RuntimeError: provider down)"
    assert list(b.transitions) == list(reversed(seen))
    stats = b.stats()
    assert stats["transitions"] == 3
    assert (stats["calls"], stats["failures"], stats["successes"]) == (3, 2, 1)


async def test_a_change_decided_on_a_replaced_state_is_dropped() -> None:
    b = breaker(failure_threshold=1)
    closed = b.state
    await failures(b, 1)
    opened = b.state
    assert b.transition(closed, opened, "late") is opened  # closed is no longer current
    assert len(b.transitions) == 1


async def test_time_in_state_follows_the_injected_clock() -> None:
    clock = FakeClock()
    b = breaker(clock, failure_threshold=1)
    clock.advance(2.5)
    assert b.stats()["time_in_state"] == 2.5
    await failures(b, 1)
    clock.advance(1)
    assert b.stats()["time_in_state"] == 1


# ---------------------------------------------------------------- timeouts and slow calls

LATE_TIMER = 0.1
"""How late a loaded event loop may fire a timer: the margin on a measured timeout."""


@pytest.mark.slow  # it bounds a duration, which a loaded machine can stretch
async def test_a_call_past_the_timeout_is_cancelled_and_counted_a_failure() -> None:
    timeout = 0.05
    b = breaker(timeout=timeout, failure_threshold=2)
    cancelled = []

    async def hangs() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await b.call(hangs)
    assert timeout <= time.monotonic() - started < timeout + LATE_TIMER
    assert cancelled == [True]
    stats = b.stats()
    assert (stats["timeouts"], stats["failures"]) == (1, 1)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_calls_in_flight_each_meet_their_own_deadline() -> None:
    timeout = 0.1
    b = breaker(timeout=timeout, failure_threshold=100)

    async def takes(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    fast = asyncio.create_task(b.call(takes, timeout / 4))
    await asyncio.sleep(timeout / 2)
    late = asyncio.create_task(b.call(takes, 10))  # its deadline is after the first call's
    assert await fast == timeout / 4
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await late
    assert time.monotonic() - started >= timeout / 2
    assert b.stats()["timeouts"] == 1


async def test_cancelling_the_caller_is_not_a_timeout_and_not_a_failure() -> None:
    b = breaker(timeout=5, failure_threshold=1)
    task = asyncio.create_task(b.call(asyncio.sleep, 10))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = b.stats()
    assert b.state.name == "closed"
    assert (stats["failures"], stats["timeouts"], stats["ignored"]) == (0, 0, 1)


async def test_timeout_zero_sets_no_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    b = breaker(timeout=0)
    loop = asyncio.get_running_loop()
    real_time = loop.time

    async def outlives_any_deadline() -> str:
        # The loop's clock jumps past the longest timeout a breaker takes (3600 s): any
        # deadline set for this call is due at the next turn of the loop, and fires.
        monkeypatch.setattr(loop, "time", lambda: real_time() + 2 * 3600)
        for _ in range(3):
            await asyncio.sleep(0)
        monkeypatch.setattr(loop, "time", real_time)
        return "done"

    assert await b.call(outlives_any_deadline) == "done"


async def test_the_breaker_survives_a_new_event_loop() -> None:
    b = breaker(timeout=0.5)

    def in_new_loop() -> object:
        return asyncio.run(b.call(ok, "other loop"))

    assert await asyncio.to_thread(in_new_loop) == "other loop"
    assert await b.call(ok, "this loop") == "this loop"


async def test_slow_calls_are_counted_and_optionally_failures() -> None:
    slow = 0.02
    counted_only = breaker(slow_call_seconds=slow, failure_threshold=1)
    await counted_only.call(asyncio.sleep, slow * 2)
    assert counted_only.state.name == "closed"
    assert counted_only.stats()["slow_calls"] == 1

    failing = breaker(slow_call_seconds=slow, slow_call_is_failure=True, failure_threshold=1)
    await failing.call(asyncio.sleep, slow * 2)  # the answer still arrives
    assert failing.state.name == "open"
    assert "slow call" in failing.transitions[0].cause


async def test_no_lock_is_held_across_calls_ten_concurrent_calls_overlap() -> None:
    seconds = 0.1
    b = breaker(timeout=5)
    started = time.monotonic()
    await asyncio.gather(*(b.call(asyncio.sleep, seconds) for _ in range(10)))
    assert time.monotonic() - started < seconds * 3  # serialized they would take 10x


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("error", "counts"),
    [
        (RuntimeError("boom"), True),
        (TimeoutError(), True),
        (HTTPError(500), True),
        (HTTPError(503), True),
        (HTTPError(429), True),
        (HTTPError(408), True),
        (HTTPError(400), False),
        (HTTPError(401), False),
        (HTTPError(404), False),
        (HTTPError(422), False),
        (WrappedHTTPError(404), False),
        (WrappedHTTPError(502), True),
    ],
)
def test_default_classification(error: Exception, counts: bool) -> None:
    assert default_is_failure(error) is counts


def test_http_status_reads_the_common_shapes() -> None:
    class AiohttpStyle(Exception):
        status = 418

    assert http_status(HTTPError(500)) == 500
    assert http_status(WrappedHTTPError(404)) == 404
    assert http_status(AiohttpStyle()) == 418
    assert http_status(ValueError()) is None


async def test_a_caller_fault_propagates_without_counting() -> None:
    b = breaker(failure_threshold=1)
    await failures(b, 3, HTTPError(400))
    stats = b.stats()
    assert b.state.name == "closed"
    assert (stats["failures"], stats["ignored"]) == (0, 3)


async def test_a_custom_predicate_decides_what_counts() -> None:
    b = breaker(failure_threshold=1)
    b.is_failure = lambda exc: not isinstance(exc, KeyError)
    await failures(b, 2, KeyError("cache miss"))
    assert b.state.name == "closed"
    await failures(b, 1, ValueError("bad"))
    assert b.state.name == "open"


# ---------------------------------------------------------------- fallbacks, forms


async def test_call_with_fallback_answers_while_open_and_on_counted_failures() -> None:
    clock = FakeClock()
    b = breaker(clock, failure_threshold=2)

    async def fallback(prompt: str) -> str:
        return f"cached answer to {prompt}"

    b.fallback = fallback

    async def provider(prompt: str) -> str:
        raise HTTPError(503)

    assert await b.call_with_fallback(provider, "hi") == "cached answer to hi"
    assert await b.call_with_fallback(provider, "hi") == "cached answer to hi"
    assert b.state.name == "open"
    assert await b.call_with_fallback(ok, "hi") == "cached answer to hi"  # refused, unsent

    async def bad_request(prompt: str) -> str:
        raise HTTPError(400)

    clock.advance(60)
    with pytest.raises(HTTPError):  # the caller's own fault is not papered over
        await b.call_with_fallback(bad_request, "hi")


async def test_call_with_fallback_without_a_fallback_raises() -> None:
    b = breaker(failure_threshold=1)
    await failures(b, 1)
    with pytest.raises(CircuitOpenError):
        await b.call_with_fallback(ok)


async def test_a_sync_fallback_works_too() -> None:
    b = breaker(failure_threshold=1, timeout=0)
    b.fallback = lambda *args: "sync fallback"
    await failures(b, 1)
    assert await b.call_with_fallback(ok) == "sync fallback"


async def test_sync_callables_and_awaitable_results() -> None:
    b = breaker(timeout=1)
    assert await b.call(lambda x: x * 2, 21) == 42
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()
    loop.call_soon(future.set_result, "from a future")
    assert await b.call(lambda: future) == "from a future"


async def test_decorator_form_for_async_and_sync_functions() -> None:
    b = breaker(failure_threshold=1)

    @b
    async def fetch(x: int) -> int:
        if x < 0:
            raise RuntimeError("negative")
        return x + 1

    @b
    def compute(x: int) -> int:
        return x * 3

    assert fetch.__name__ == "fetch"
    assert await fetch(1) == 2
    assert compute(2) == 6
    with pytest.raises(RuntimeError):
        await fetch(-1)
    with pytest.raises(CircuitOpenError):
        compute(2)


async def test_protect_with_fallback() -> None:
    b = breaker(failure_threshold=1)
    b.fallback = lambda x: -x

    async def flaky(x: int) -> int:
        raise RuntimeError("down")

    def sync_flaky(x: int) -> int:
        raise RuntimeError("down")

    assert await b.protect(flaky, fallback=True)(5) == -5
    assert b.protect(sync_flaky, fallback=True)(6) == -6


def test_call_sync_counts_and_refuses() -> None:
    clock = FakeClock()
    b = breaker(clock, failure_threshold=2, recovery_timeout=1, success_threshold=1)

    def boom() -> None:
        raise RuntimeError("down")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            b.call_sync(boom)
    with pytest.raises(CircuitOpenError):
        b.call_sync(lambda: None)
    clock.advance(1)
    assert b.call_sync(lambda: "trial") == "trial"
    assert b.state.name == "closed"


def test_the_breaker_names_import_no_back_end() -> None:
    import json
    import subprocess
    import sys

    code = (
        "import sys, json\n"
        "from revoctl.core import CircuitBreaker, CircuitBreakerManager, CircuitOpenError\n"
        "print(json.dumps(sorted(m for m in ('sqlalchemy', 'redis', 'revoctl.config', 'typer')"
        " if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
