"""The routing strategies over a model's deployments, the breaker check that keeps an open
deployment out, the fleet's loads folded into them, and the retries' backoff bound."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from revoctl.core import CircuitBreaker, CircuitBreakerConfig
from revoctl.core.gateway.settings import ModelConfig, RoutingStrategy
from revoctl.runtime.deployments import Deployment, FleetLoad, available, choose
from revoctl.runtime.fleet_load import FleetLoads, MemoryFleetLoadStore, merged, report
from revoctl.runtime.routing import backoff_cap

WEIGHTED, LEAST_BUSY, LOWEST_LATENCY = (
    RoutingStrategy.WEIGHTED,
    RoutingStrategy.LEAST_BUSY,
    RoutingStrategy.LOWEST_LATENCY,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def deployment(name: str, weight: float = 1.0, breaker: Any = None) -> Deployment:
    return Deployment("gpt", name, "llm", name, weight, breaker)


def opened_breaker(clock: Clock, recovery: float = 30) -> CircuitBreaker:
    config = CircuitBreakerConfig(
        name="b", failure_threshold=1, recovery_timeout=recovery, timeout=0
    )
    breaker = CircuitBreaker(config, clock=clock)
    breaker.state.record_failure("down")
    assert breaker.state.name == "open"
    return breaker


def picks(strategy: RoutingStrategy, pool: list[Deployment], n: int = 4000) -> Counter[str]:
    rng = random.Random(7)
    return Counter(choose(strategy, pool, (), rng).name for _ in range(n))


def test_weighted_picks_in_proportion_to_the_weights() -> None:
    counts = picks(WEIGHTED, [deployment("a", 2), deployment("b", 1), deployment("c", 1)])
    assert counts["a"] / 4000 == pytest.approx(0.5, abs=0.03)
    assert counts["b"] / 4000 == pytest.approx(0.25, abs=0.03)


def test_least_busy_counts_the_fleet_and_its_own_calls_and_breaks_ties_at_random() -> None:
    a, b, c = deployment("a"), deployment("b"), deployment("c")
    a.fleet = FleetLoad(in_flight=3)
    b.in_flight = 2
    c.fleet, c.in_flight = FleetLoad(in_flight=1), 1
    assert set(picks(LEAST_BUSY, [a, b, c])) == {"b", "c"}  # 3 against 2 and 2
    assert picks(LEAST_BUSY, [a, b, c])["b"] == pytest.approx(2000, abs=200)
    c.in_flight = 2
    assert set(picks(LEAST_BUSY, [a, b, c])) == {"b"}


def test_lowest_latency_tries_the_unmeasured_then_the_fastest_fleet_wide() -> None:
    a, b = deployment("a"), deployment("b")
    a.observe(0.5)
    assert set(picks(LOWEST_LATENCY, [a, b])) == {"b"}  # no sample yet: it gets tried
    b.fleet = FleetLoad(latency=0.9, samples=10)
    assert set(picks(LOWEST_LATENCY, [a, b])) == {"a"}
    a.fleet = FleetLoad(latency=2.0, samples=100)  # the fleet saw a slow: 1 sample against 100
    assert set(picks(LOWEST_LATENCY, [a, b])) == {"b"}


def test_lowest_latency_tries_an_unmeasured_deployment_one_call_at_a_time() -> None:
    a, b, c = deployment("a"), deployment("b"), deployment("c")
    a.observe(0.5)
    b.in_flight = 1  # its first call is on its way: no second one before its sample
    assert set(picks(LOWEST_LATENCY, [a, b])) == {"a"}
    c.in_flight = 1
    assert set(picks(LOWEST_LATENCY, [b, c])) == {"b", "c"}  # none measured: the least busy
    c.in_flight = 2
    assert set(picks(LOWEST_LATENCY, [b, c])) == {"b"}


def test_the_moving_average_follows_new_samples() -> None:
    a = deployment("a")
    a.observe(1.0)
    for _ in range(30):
        a.observe(0.1)
    assert a.latency == pytest.approx(0.1, abs=0.01) and a.samples == 31


def test_an_open_breaker_gets_nothing_until_its_recovery_time() -> None:
    clock = Clock()
    down = deployment("down", weight=100, breaker=opened_breaker(clock))
    up = deployment("up")
    assert not available(down) and available(up)
    assert set(picks(WEIGHTED, [down, up])) == {"up"}
    clock.now += 31  # past recovery_timeout: a trial call may go
    assert available(down)


def test_a_retry_prefers_an_untried_deployment_else_the_same_one() -> None:
    clock = Clock()
    a, b = deployment("a"), deployment("b", breaker=opened_breaker(clock))
    c = deployment("c")
    rng = random.Random(1)
    assert {choose(WEIGHTED, [a, b, c], [a], rng).name for _ in range(50)} == {"c"}
    assert {choose(WEIGHTED, [a, b, c], [a, c], rng).name for _ in range(50)} == {"a", "c"}
    assert choose(WEIGHTED, [a], [a], rng) is a
    # Every breaker open: one is still chosen, for its breaker to refuse the call itself.
    assert choose(WEIGHTED, [b], [], rng) is b


def test_backoff_doubles_from_retry_backoff_seconds() -> None:
    config = ModelConfig(provider="llm", retry_backoff_seconds=0.1)
    assert [backoff_cap(config, n) for n in (1, 2, 3)] == pytest.approx([0.1, 0.2, 0.4])


def test_reports_merge_in_flight_sums_and_latencies_by_samples() -> None:
    a = deployment("a")
    a.in_flight, a.latency, a.samples = 2, 0.2, 500
    loads = merged([report([a]), {a.key: {"in_flight": 1, "latency": 0.4, "samples": 100}}])
    assert loads[a.key].in_flight == 3
    assert loads[a.key].latency == pytest.approx(0.3)  # each counts up to 100 samples


class FailingStore(MemoryFleetLoadStore):
    failing = False

    async def exchange(self, process: str, loads: Any, stale_seconds: float) -> Any:
        if self.failing:
            raise ConnectionError("store away")
        return [{"gpt\x1fa": {"in_flight": 4}}]


async def test_a_store_outage_keeps_the_fleets_view_a_while_then_forgets_it() -> None:
    clock, store, a = Clock(), FailingStore(), deployment("a")

    async def open_store() -> FailingStore:
        return store

    loads = FleetLoads([a], open_store, 1.0, process="me", clock=clock)
    await loads.refresh()
    assert a.fleet_in_flight() == 4
    store.failing = True
    clock.now += 2
    with pytest.raises(ConnectionError):
        await loads.refresh()
    assert a.fleet_in_flight() == 4  # two refreshes old: still counted
    clock.now += 2
    with pytest.raises(ConnectionError):
        await loads.refresh()
    assert a.fleet_in_flight() == 0  # past three refreshes: this process's own only
