"""What each process reports for its breakers (the runtime's ``revoctl_breaker_state``) and
the count of its changes by source, with managers on one memory store standing for the
processes of a fleet. The same with ``revoctl serve --workers 2`` on Redis is in
``tests/e2e/test_gateway_fleet.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from revoctl.core import CircuitBreakerManager
from revoctl.core.breakers import MemoryBreakerStateStore, SharedState
from revoctl.core.breakers._reported import worse
from tests.unit.test_breaker_fleet import config, eventually, failures, opener

Fleet = Callable[..., Awaitable[list[CircuitBreakerManager]]]


@pytest.fixture
async def store() -> MemoryBreakerStateStore:
    return MemoryBreakerStateStore()


@pytest.fixture
async def runtimes(store: MemoryBreakerStateStore) -> AsyncIterator[Fleet]:
    """Runtime managers on ``store`` that have called no breaker yet."""
    managers: list[CircuitBreakerManager] = []

    async def make(count: int, **breaker: Any) -> list[CircuitBreakerManager]:
        made = [
            CircuitBreakerManager(config(**breaker), open_store=opener(store)) for _ in range(count)
        ]
        for manager in made:
            await manager.initialize()
        managers.extend(made)
        await eventually(lambda: all(m.control.status == "ok" for m in made))
        return made

    yield make
    for manager in managers:
        await manager.close()


@pytest.fixture
def operator(store: MemoryBreakerStateStore) -> CircuitBreakerManager:
    """``revoctl breakers`` on the same store."""
    return CircuitBreakerManager(config(), open_store=opener(store), role="cli")


def reported(manager: CircuitBreakerManager, name: str = "svc") -> str:
    return manager.reported.states()[name]


def counted(manager: CircuitBreakerManager, name: str = "svc") -> dict[tuple[str, ...], int]:
    """The transitions counted for ``name``: (from, to, source) -> count."""
    return {
        (was, now, source): count
        for (breaker, was, now, source), count in manager.reported.transitions().items()
        if breaker == name
    }


async def test_a_trip_is_reported_by_processes_that_never_called_the_breaker(
    runtimes: Fleet, operator: CircuitBreakerManager
) -> None:
    a, b = await runtimes(2)
    assert {reported(a), reported(b)} == {"closed"}
    await operator.trip("svc", reason="provider incident")
    await eventually(lambda: reported(a) == reported(b) == "forced_open")
    assert a.stats()["svc"]["state"] == "closed"  # its own breaker has not been called
    await operator.reset("svc")
    await eventually(lambda: reported(a) == reported(b) == "closed")
    for manager in (a, b):  # once each, as followed, never as its own doing
        assert counted(manager) == {
            ("closed", "forced_open", "fleet"): 1,
            ("forced_open", "closed", "fleet"): 1,
        }


async def test_a_shared_trip_counts_local_where_calls_failed_and_fleet_where_followed(
    runtimes: Fleet,
) -> None:
    failing, calling, idle = await runtimes(3)
    calling.get("svc")  # in use, following the fleet through its own breaker
    await failures(failing, 2)
    assert reported(failing) == "open"
    await eventually(lambda: reported(calling) == reported(idle) == "open")
    await eventually(lambda: calling.stats()["svc"]["state"] == "open")
    assert counted(failing) == {("closed", "open", "local"): 1}
    assert counted(calling) == {("closed", "open", "fleet"): 1}
    assert counted(idle) == {("closed", "open", "fleet"): 1}


async def test_a_trip_kept_local_is_reported_by_its_process_only(runtimes: Fleet) -> None:
    failing, other = await runtimes(2, share_trips=False)
    await failures(failing, 2)
    assert reported(failing) == "open"
    assert counted(failing) == {("closed", "open", "local"): 1}
    await other.control.sync()
    assert reported(other) == "closed" and counted(other) == {}


async def test_a_used_breaker_reports_the_worse_of_its_own_state_and_the_fleets(
    runtimes: Fleet, operator: CircuitBreakerManager
) -> None:
    [manager] = await runtimes(1, share_trips=False)
    await failures(manager, 2)
    await operator.trip("svc", reason="incident")
    await eventually(lambda: reported(manager) == "forced_open")
    await operator.reset("svc")
    await eventually(lambda: reported(manager) == "closed")  # the reset closed it here too
    assert counted(manager) == {
        ("closed", "open", "local"): 1,
        ("open", "forced_open", "fleet"): 1,
        ("forced_open", "closed", "fleet"): 1,
    }


async def test_a_process_that_starts_during_a_trip_starts_there_and_counts_no_change(
    runtimes: Fleet, operator: CircuitBreakerManager
) -> None:
    await operator.trip("svc", reason="incident")
    [late] = await runtimes(1)
    assert reported(late) == "forced_open" and counted(late) == {}


async def test_a_timed_trip_ends_in_processes_that_never_called_the_breaker(
    runtimes: Fleet, operator: CircuitBreakerManager
) -> None:
    a, b = await runtimes(2)
    await operator.trip("svc", reason="deploy", for_seconds=0.3)
    await eventually(lambda: reported(a) == reported(b) == "forced_open")
    await eventually(lambda: reported(a) == reported(b) == "closed")
    assert counted(a)[("forced_open", "closed", "fleet")] == 1


async def test_a_breaker_only_the_fleet_knows_is_reported_too(
    runtimes: Fleet, store: MemoryBreakerStateStore
) -> None:
    [manager] = await runtimes(1)
    snapshot = await store.read()
    record = SharedState("legacy_api", "open", version=1, opened_at=snapshot.now, reason="x")
    await store.compare_and_set(record, None)
    await manager.control.sync()
    assert reported(manager, "legacy_api") == "open"


def test_worse_orders_states_by_severity() -> None:
    assert worse("closed", "half_open") == "half_open"
    assert worse("open", "half_open") == "open"
    assert worse("forced_open", "open") == "forced_open"
    assert worse("closed", "closed") == "closed"
