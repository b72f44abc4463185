"""The fleet's calls in flight and latencies per deployment, shared through the limits' store.

``least_busy`` and ``lowest_latency`` routing compare deployments across every process of
the fleet, but never ask a store on the request path. Instead each process, every
``gateway.routing_refresh_seconds`` (`FleetLoads.refresh`, the gateway's background work),
publishes its own loads (per deployment: calls in flight now, its moving average of call
durations and how many calls it holds) and reads back the others' sums, which the request
path then adds to its own live count (`revoctl.runtime.deployments`). So a deployment's
fleet-wide count is exact for this process and at most one refresh old for the others.

The store follows ``[limits] store`` (`open_fleet_load_store`): ``memory`` is this process
alone; ``redis`` and ``sql`` (`revoctl.runtime.fleet_load_stores`) keep one entry per
process with the time it was written, and an entry older than `STALE_REFRESHES` refreshes
(a process that died) is left out of the sums and removed. A store that fails is logged
once per outage by the loop that calls `refresh`, never fails a request, and after
`STALE_REFRESHES` failed refreshes the others' loads are forgotten: routing goes on with
this process's own.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from revoctl.core._process import Role, process_name
from revoctl.core._stores import StoreKind
from revoctl.runtime.deployments import MAX_SAMPLE_WEIGHT, Deployment, FleetLoad
from revoctl.runtime.fleet_load_stores import Loads, RedisFleetLoadStore, SqlFleetLoadStore

if TYPE_CHECKING:
    from revoctl.core.services import Services

STALE_REFRESHES = 3
"""A process's entry counts while it is younger than this many refresh periods."""


class FleetLoadStore(Protocol):
    """Where the processes of a fleet publish their loads and read the others'."""

    async def exchange(self, process: str, loads: Loads, stale_seconds: float) -> list[Loads]:
        """Publish ``process``'s ``loads``; the other processes' reports younger than
        ``stale_seconds`` (older ones are removed).

        :raises Exception: the store's own errors: the caller logs them.
        """
        ...

    async def close(self) -> None: ...


class MemoryFleetLoadStore:
    """This process alone: there is no other process's load to read."""

    async def exchange(self, process: str, loads: Loads, stale_seconds: float) -> list[Loads]:
        return []

    async def close(self) -> None:
        return None


def report(deployments: Iterable[Deployment]) -> Loads:
    """This process's loads, as it publishes them."""
    return {
        d.key: {"in_flight": d.in_flight, "latency": d.latency, "samples": d.samples}
        for d in deployments
    }


def merged(reports: Iterable[Loads]) -> dict[str, FleetLoad]:
    """The processes' reports summed per deployment: calls in flight added up, moving
    averages merged by their samples (each counted up to `MAX_SAMPLE_WEIGHT`)."""
    loads: dict[str, FleetLoad] = {}
    weighted: dict[str, float] = {}
    for one in reports:
        for key, entry in one.items():
            load = loads.setdefault(key, FleetLoad())
            load.in_flight += max(0, int(entry.get("in_flight") or 0))
            latency = entry.get("latency")
            if isinstance(latency, int | float) and latency >= 0:
                samples = max(1, min(int(entry.get("samples") or 0), MAX_SAMPLE_WEIGHT))
                weighted[key] = weighted.get(key, 0.0) + float(latency) * samples
                load.samples += samples
    for key, total in weighted.items():
        loads[key].latency = total / loads[key].samples
    return loads


class FleetLoads:
    """This process's part in sharing deployments' loads: publish, read, fold in."""

    def __init__(
        self,
        deployments: Sequence[Deployment],
        open_store: Callable[[], Awaitable[FleetLoadStore]],
        refresh_seconds: float,
        *,
        process: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deployments = list(deployments)
        self.refresh_seconds = refresh_seconds
        self.process = process or process_name(Role.RUNTIME)
        self._open_store = open_store
        self._store: FleetLoadStore | None = None
        self._clock = clock
        self._last_read = clock()

    async def refresh(self) -> None:
        """Publish this process's loads and fold the others' into each deployment.

        :raises Exception: the store failed (the others' loads are kept until they are
            `STALE_REFRESHES` refreshes old, then forgotten).
        """
        stale = STALE_REFRESHES * self.refresh_seconds
        try:
            if self._store is None:
                self._store = await self._open_store()
            others = await self._store.exchange(self.process, report(self.deployments), stale)
        except Exception:
            if self._clock() - self._last_read > stale:
                self._fold({})
            raise
        self._last_read = self._clock()
        self._fold(merged(others))

    def _fold(self, loads: Mapping[str, FleetLoad]) -> None:
        for deployment in self.deployments:
            deployment.fleet = loads.get(deployment.key) or FleetLoad()

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None


def open_fleet_load_store(services: Services) -> Callable[[], Awaitable[FleetLoadStore]]:
    """How to open the store ``[limits] store`` names (opened at the first refresh)."""
    limits = services.settings.limits

    async def open_store() -> FleetLoadStore:
        if limits.store is StoreKind.REDIS:
            client = await services.store_context().open_redis(pool_wait=limits.pool_wait_seconds)
            return RedisFleetLoadStore(client, limits.key_prefix + "routing")
        if limits.store is StoreKind.SQL:
            return SqlFleetLoadStore(services.db)
        return MemoryFleetLoadStore()

    return open_store
