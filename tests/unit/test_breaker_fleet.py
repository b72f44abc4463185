"""The fleet in one process: several managers on one memory store stand for processes.

Covers following the shared record (trips shared or kept local, operator trips and
resets, timed trips), the fleet-wide trial lease, the store failing (each breaker goes
on alone, status and health say so) and coming back, status, history and health.
The multi-process versions of these run against real servers in
``tests/integration/test_breaker_processes.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from revoctl.core import (
    BreakersConfig,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitBreakerManager,
    CircuitOpenError,
)
from revoctl.core.breakers import (
    BreakerStateStore,
    MemoryBreakerStateStore,
    ProcessReport,
    SharedState,
    Snapshot,
    Transition,
    Written,
)
from revoctl.core.breakers._states import HalfOpen
from revoctl.core.errors import BackendUnavailableError, NotFoundError, UsageError

POLL = 0.05


def config(**breaker: Any) -> BreakersConfig:
    settings = {"timeout": 0, "failure_threshold": 2, "recovery_timeout": 0.2, **breaker}
    return BreakersConfig(
        store="memory",
        poll_interval=POLL,
        report_interval=POLL,
        services={"svc": settings},
    )


class Clock:
    """Time for the breakers and the store alike, moved by the test."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FlakyStore:
    """A store that can be cut off: every operation then fails as an outage does."""

    def __init__(self, inner: BreakerStateStore) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.down = False

    def describe(self) -> str:
        return "flaky " + self.inner.describe()

    def _check(self) -> None:
        if self.down:
            raise BackendUnavailableError("cannot reach the store: connection refused")

    async def read(self) -> Snapshot:
        self._check()
        return await self.inner.read()

    async def compare_and_set(self, record: SharedState, transition: Transition | None) -> Written:
        self._check()
        return await self.inner.compare_and_set(record, transition)

    async def append_history(self, transition: Transition) -> None:
        self._check()
        await self.inner.append_history(transition)

    async def history(self, name: str, limit: int) -> list[Transition]:
        self._check()
        return await self.inner.history(name, limit)

    async def report(self, report: ProcessReport, ttl: float) -> None:
        self._check()
        await self.inner.report(report, ttl)

    async def fleet(self) -> tuple[float, list[ProcessReport]]:
        self._check()
        return await self.inner.fleet()

    def changes(self) -> AsyncIterator[str] | None:
        return None

    async def close(self) -> None:
        await self.inner.close()


def opener(store: BreakerStateStore) -> Callable[[], Awaitable[BreakerStateStore]]:
    async def open_store() -> BreakerStateStore:
        return store

    return open_store


async def eventually(check: Callable[[], bool], within: float = POLL * 20) -> float:
    """Seconds until ``check()`` holds; fails past ``within``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, "condition not met in time"
        await asyncio.sleep(POLL / 10)
    return time.monotonic() - started


async def ok() -> str:
    return "ok"


async def fail() -> None:
    raise RuntimeError("provider down")


async def failures(manager: CircuitBreakerManager, count: int, name: str = "svc") -> None:
    for _ in range(count):
        with pytest.raises(RuntimeError):
            await manager.get(name).call(fail)


@pytest.fixture
async def fleet() -> AsyncIterator[Callable[..., Awaitable[list[CircuitBreakerManager]]]]:
    managers: list[CircuitBreakerManager] = []

    async def make(
        count: int,
        store: BreakerStateStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        **breaker: Any,
    ) -> list[CircuitBreakerManager]:
        """``count`` managers on ``store``; ``clock`` drives their breakers (give the
        store the same one to drive the fleet's time too)."""
        shared = store or MemoryBreakerStateStore()
        made = [
            CircuitBreakerManager(config(**breaker), open_store=opener(shared), clock=clock)
            for _ in range(count)
        ]
        for manager in made:
            await manager.initialize()
            manager.get("svc")
        managers.extend(made)
        await eventually(lambda: all(m.control.status == "ok" for m in made))
        return made

    yield make
    for manager in managers:
        await manager.close()


async def test_a_shared_trip_opens_every_process(fleet: Any) -> None:
    a, b, c = await fleet(3)
    await failures(a, 2)
    assert a.get("svc").state.name == "open"
    await eventually(lambda: b.get("svc").state.name == c.get("svc").state.name == "open")
    with pytest.raises(CircuitOpenError) as refused:
        await b.get("svc").call(ok)
    assert "2 consecutive failures" in (refused.value.reason or "")
    [entry] = await a.history("svc")
    assert (entry["from"], entry["to"], entry["scope"]) == ("closed", "open", "fleet")
    assert entry["process"] == a.process


async def test_a_trip_not_shared_stays_in_its_process_and_is_recorded_as_local(
    fleet: Any,
) -> None:
    a, b = await fleet(2, share_trips=False)
    await failures(a, 2)
    await a.control.sync()  # a has written what it decided ...
    await b.control.sync()  # ... and b has read the fleet since
    assert (a.get("svc").state.name, b.get("svc").state.name) == ("open", "closed")
    assert await b.get("svc").call(ok) == "ok"
    history = await eventually_history(a, 1)
    assert (history[0]["to"], history[0]["scope"]) == ("open", "local")
    [item] = await b.status("svc")
    assert item["state"] == "closed"  # the fleet's record: only one process is open


async def eventually_history(manager: CircuitBreakerManager, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def poll() -> None:
        nonlocal found
        while len(found := await manager.history("svc")) < count:
            await asyncio.sleep(POLL / 5)

    await asyncio.wait_for(poll(), POLL * 20)
    return found


async def test_operator_trip_and_reset_reach_every_process(fleet: Any) -> None:
    a, b, c = await fleet(3, share_trips=False)
    await failures(c, 2)  # c is open on its own
    await eventually_history(c, 1)
    operator = CircuitBreakerManager(config(), open_store=opener(await a.store()), role="cli")
    item = await operator.trip("svc", reason="provider incident", actor="ops@example")
    assert (item["state"], item["forced"], item["reason"]) == (
        "forced_open",
        True,
        "provider incident",
    )
    await eventually(lambda: all(m.get("svc").state.name == "forced_open" for m in (a, b, c)))
    with pytest.raises(CircuitOpenError) as refused:
        await a.get("svc").call(ok)
    assert refused.value.state == "forced_open" and refused.value.retry_after is None

    [reset] = await operator.reset("svc", actor="ops@example")
    assert (reset["state"], reset["generation"]) == ("closed", 1)
    await eventually(lambda: all(m.get("svc").state.name == "closed" for m in (a, b, c)))
    assert all(m.get("svc").generation == 1 for m in (a, b, c))
    assert c.get("svc").state.failure_count == 0  # the window started again
    history = await operator.history("svc")
    assert [(h["to"], h["actor"]) for h in history[:2]] == [
        ("closed", "ops@example"),
        ("forced_open", "ops@example"),
    ]


async def test_a_reset_clears_a_local_trip_and_the_windows(fleet: Any) -> None:
    a, b = await fleet(2, share_trips=False, failure_threshold=3)
    await failures(a, 3)
    await failures(b, 2)
    assert (a.get("svc").state.name, b.get("svc").state.failure_count) == ("open", 2)
    await a.reset("svc")
    await eventually(lambda: b.get("svc").generation == 1)
    assert a.get("svc").state.name == "closed"
    assert b.get("svc").state.failure_count == 0
    await failures(b, 2)
    assert b.get("svc").state.name == "closed"  # two more, not four in a row


async def test_a_timed_trip_expires_everywhere_and_is_written_down(fleet: Any) -> None:
    clock = Clock()
    a, b = await fleet(2, store=MemoryBreakerStateStore(clock=clock), clock=clock)
    seconds = POLL * 4
    await a.trip("svc", reason="deploy", for_seconds=seconds)
    await eventually(lambda: b.get("svc").state.name == "forced_open")
    clock.now += seconds
    assert await b.get("svc").call(ok) == "ok"
    await eventually(lambda: a.get("svc").state.name == "closed")
    history = await eventually_history(a, 2)
    assert history[0]["cause"] == "operator trip expired"
    [item] = await a.status("svc")
    assert item["state"] == "closed"


async def test_the_fleet_sends_exactly_success_threshold_trial_calls(fleet: Any) -> None:
    clock = Clock()
    managers = await fleet(
        6,
        store=MemoryBreakerStateStore(clock=clock),
        clock=clock,
        failure_threshold=1,
        success_threshold=3,
        recovery_timeout=0.1,
    )
    await failures(managers[0], 1)
    await eventually(lambda: all(m.get("svc").state.name == "open" for m in managers))
    clock.now += 0.15

    trials = 0
    release = asyncio.Event()

    async def trial() -> str:
        nonlocal trials
        trials += 1
        await release.wait()
        return "recovered"

    async def attempt(manager: CircuitBreakerManager) -> str:
        try:
            return str(await manager.get("svc").call(trial))
        except CircuitOpenError:
            return "refused"

    first = [asyncio.create_task(attempt(m)) for m in managers for _ in range(3)]
    await eventually(lambda: sum(task.done() for task in first) == len(first) - trials)
    assert trials == 3
    release.set()
    outcomes = await asyncio.gather(*first)
    assert outcomes.count("recovered") == 3
    await eventually(lambda: all(m.get("svc").state.name == "closed" for m in managers))
    history = await managers[0].history("svc")
    assert [h["to"] for h in history[:3]] == ["closed", "half_open", "open"]
    assert history[0]["cause"] == "3 trial calls succeeded"


async def test_a_failed_trial_opens_the_whole_fleet_again(fleet: Any) -> None:
    clock = Clock()
    a, b = await fleet(
        2,
        store=MemoryBreakerStateStore(clock=clock),
        clock=clock,
        failure_threshold=1,
        success_threshold=1,
        recovery_timeout=0.1,
    )
    await failures(a, 1)
    await eventually(lambda: b.get("svc").state.name == "open")
    clock.now += 0.15
    await failures(a, 1)  # the trial
    await eventually(lambda: b.get("svc").state.name == "open" and b.get("svc").followed >= 3)
    with pytest.raises(CircuitOpenError):
        await b.get("svc").call(ok)
    history = await a.history("svc")
    assert history[0]["cause"].startswith("trial call failed")


async def test_store_down_breakers_go_on_alone_and_follow_again_when_it_returns(
    fleet: Any,
) -> None:
    clock = Clock()
    store = FlakyStore(MemoryBreakerStateStore(clock=clock))
    a, b = await fleet(
        2, store=store, clock=clock, failure_threshold=1, success_threshold=1, recovery_timeout=0.1
    )
    store.down = True
    await eventually(lambda: a.control.status == "unreachable")
    assert "connection refused" in (a.control.error or "")
    assert await a.get("svc").call(ok) == "ok"  # no store needed while closed
    await failures(a, 1)  # a trips on its own ...
    assert (a.get("svc").state.name, b.get("svc").state.name) == ("open", "closed")
    clock.now += 0.15
    assert await a.get("svc").call(ok) == "ok"  # ... and runs its own trial
    assert a.get("svc").state.name == "closed"

    health = await a.health_check(1)
    assert health["status"] == "degraded"
    assert "control plane unreachable" in health["reason"]
    with pytest.raises(BackendUnavailableError):
        await a.status()

    store.down = False
    await eventually(lambda: a.control.status == b.control.status == "ok")
    await a.trip("svc", reason="back")
    await eventually(lambda: b.get("svc").state.name == "forced_open")


async def test_health_is_degraded_while_a_breaker_is_open_naming_it(fleet: Any) -> None:
    (a,) = await fleet(1, share_trips=False)
    assert (await a.health_check(1))["status"] == "healthy"
    await failures(a, 2)
    health = await a.health_check(1)
    assert health["status"] == "degraded"
    assert health["open"] == ["svc"] and "svc" in health["reason"]
    await a.trip("openai_api", reason="incident")
    health = await a.health_check(1)
    assert health["breakers"]["openai_api"] == "forced_open"
    assert "openai_api (forced_open)" in health["reason"]


async def test_status_shows_the_fleet_and_flags_processes_that_stopped_reporting(
    fleet: Any,
) -> None:
    clock = Clock()
    store = MemoryBreakerStateStore(clock=clock)
    a, b = await fleet(2, store=store, clock=clock)
    await a.get("svc").call(ok)
    await eventually(
        lambda: (
            len(store._reports) == 2
            and all("svc" in report.breakers for report, _ in store._reports.values())
        )
    )
    await b.close()

    clock.now += POLL * 4  # b has missed three reports
    [item] = await a.status("svc")
    fleet_view = {entry["process"]: entry for entry in item["fleet"]}
    assert fleet_view[a.process]["calls"] == 1 and not fleet_view[a.process]["stale"]
    assert fleet_view[b.process]["stale"]
    assert item["processes"] == 1
    assert item["control_plane"]["status"] == "ok"


async def test_unknown_breakers_are_not_found() -> None:
    manager = CircuitBreakerManager(config())
    with pytest.raises(NotFoundError):
        manager.get("nosuch")
    for operation in (
        manager.status("nosuch"),
        manager.trip("nosuch"),
        manager.reset("nosuch"),
        manager.history("nosuch"),
    ):
        with pytest.raises(NotFoundError):
            await operation
    await manager.close()


async def test_bad_trip_input_is_a_usage_error() -> None:
    manager = CircuitBreakerManager(config())
    with pytest.raises(UsageError):
        await manager.trip("svc", reason="x" * 501)
    with pytest.raises(UsageError):
        await manager.trip("svc", for_seconds=-1)
    await manager.close()


async def test_the_five_predefined_breakers_with_their_own_defaults() -> None:
    manager = CircuitBreakerManager(BreakersConfig())
    assert manager.names() == ["openai_api", "anthropic_api", "deepseek_api", "database", "redis"]
    assert manager.get("openai_api").config.share_trips
    redis = manager.get("redis").config
    assert (redis.share_trips, redis.timeout) == (False, 2.0)
    stats = manager.stats()
    assert list(stats) == manager.names()
    assert stats["openai_api"]["state"] == "closed" and stats["openai_api"]["calls"] == 0
    await manager.close()


async def test_the_cli_role_follows_no_fleet() -> None:
    manager = CircuitBreakerManager(config(), role="cli")
    manager.get("svc")
    assert not manager.control.running
    await manager.close()


# ---------------------------------------------------------------- following one record


class SharedFleet:
    """A `FleetLink` whose store always answers and never grants anything."""

    def shares(self, name: str) -> bool:
        return True

    async def first_read(self) -> None:
        return None

    async def acquire_trial(self, name: str) -> bool | None:
        return False

    def report_trial(self, name: str, episode: int, success: bool | None, cause: str) -> None:
        return None


def follower(**settings: Any) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    config = CircuitBreakerConfig(name="svc", timeout=0, **settings)
    breaker = CircuitBreaker(config, clock=clock, fleet=SharedFleet())
    return breaker, clock


def same_clock(moment: float | None) -> float | None:
    return moment


def test_a_second_trip_updates_the_reason_and_expiry_without_a_new_transition() -> None:
    breaker, _ = follower()
    breaker.follow(SharedState("svc", "forced_open", version=1, reason="first"), same_clock)
    breaker.follow(
        SharedState("svc", "forced_open", version=2, reason="second", until=500.0), same_clock
    )
    assert breaker.transition_count == 1
    with pytest.raises(CircuitOpenError) as refused:
        breaker.call_sync(lambda: None)
    assert refused.value.reason == "second" and refused.value.retry_after == 400


def test_a_lifted_trip_lands_on_what_the_fleet_decided_since() -> None:
    breaker, _ = follower()
    breaker.follow(SharedState("svc", "forced_open", version=1, until=50.0), same_clock)
    breaker.follow(
        SharedState("svc", "open", version=2, until=130.0, reason="3 failures"), same_clock
    )
    assert breaker.state.name == "open"
    assert [e.to_state for e in reversed(breaker.transitions)] == ["forced_open", "closed", "open"]


def test_trials_that_already_succeeded_close_the_breaker_when_the_store_goes_away() -> None:
    breaker, clock = follower(success_threshold=1, recovery_timeout=1, failure_threshold=1)
    breaker.follow(SharedState("svc", "open", version=1, until=101.0), same_clock)
    clock.now = 101.0
    assert not breaker.state.allow()  # half-open, waiting for a permit from the fleet
    state = breaker.state
    assert isinstance(state, HalfOpen) and state.fleet
    state.permits = 1  # granted by the store
    assert breaker.call_sync(lambda: "trial") == "trial"
    assert breaker.state is state  # the fleet decides ...
    state.go_local()  # ... unless it cannot be reached: then this process does
    assert breaker.state.name == "closed"


def test_a_full_round_is_asked_again_only_once_it_lapses() -> None:
    breaker, clock = follower(success_threshold=2)
    record = SharedState(
        "svc", "half_open", version=3, episode=1, trials_granted=2, lease_until=110.0
    )
    breaker.follow(record, same_clock)
    state = breaker.state
    assert isinstance(state, HalfOpen) and state.exhausted
    assert not state.may_ask()
    clock.now = 110.0
    assert state.may_ask()
