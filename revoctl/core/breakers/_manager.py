"""`CircuitBreakerManager`: a process's breakers, the fleet's view of them, operators' controls.

``get(name)`` hands out the breaker the runtime wraps its calls in; from the first
one on (inside an event loop), the manager's `ControlPlane` keeps this process in
line with the store. ``status``, ``trip``, ``reset`` and ``history`` are what the
``revoctl breakers`` commands call: they read and write the store directly (the CLI
follows no fleet of its own), and a trip or reset reaches every process on the
store within its ``poll_interval`` (at once on Redis, which pushes changes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from revoctl.core._lifecycle import AsyncService, ServiceState
from revoctl.core._process import Role
from revoctl.core.actors import default_actor
from revoctl.core.breakers import _shared
from revoctl.core.breakers._breaker import CircuitBreaker
from revoctl.core.breakers._control import ControlPlane, process_id
from revoctl.core.breakers._reported import ReportedStates
from revoctl.core.breakers._status import NotClosed, breaker_item, stale, transition_item
from revoctl.core.breakers._transitions import effective_state
from revoctl.core.breakers.base import (
    BreakerStateStore,
    ProcessReport,
    Snapshot,
)
from revoctl.core.breakers.settings import BreakersConfig
from revoctl.core.errors import BackendUnavailableError, NotFoundError, UsageError

MAX_REASON = 500
MAX_TRIP_SECONDS = 30 * 86400


class CircuitBreakerManager(AsyncService):
    """Every configured breaker of this process (the predefined five and those in
    ``[breakers.services]``), on the store ``open_store()`` opens (memory by default).

    ``role`` is `Role.RUNTIME` (follows the fleet: the control plane starts with the
    first `get` inside an event loop, or with `initialize`) or `Role.CLI` (reads and
    writes the store, follows nothing).
    """

    def __init__(
        self,
        config: BreakersConfig,
        *,
        open_store: Callable[[], Awaitable[BreakerStateStore]] | None = None,
        role: Role | str = Role.RUNTIME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.role = Role(role)
        self.process = process_id(self.role)
        self._open_store = open_store or self._memory_store
        self._store: BreakerStateStore | None = None
        self._store_lock: asyncio.Lock | None = None
        self.control = ControlPlane(
            self.store, config, process=self.process, role=self.role, clock=clock
        )
        fleet = None if self.role is Role.CLI else self.control
        self._breakers = {
            name: CircuitBreaker(config.config_for(name), clock=clock, fleet=fleet)
            for name in config.names()
        }
        self.reported = ReportedStates(self._breakers, self.control)
        """What this process reports for each breaker (the fleet's state, or its own where
        worse) and the changes of it, for the runtime's metrics: no store round trip."""

    async def _memory_store(self) -> BreakerStateStore:
        from revoctl.core.breakers.stores.memory import MemoryBreakerStateStore

        return MemoryBreakerStateStore(history_limit=self.config.history_limit)

    async def store(self) -> BreakerStateStore:
        """The store, opened on first use (once, however many tasks ask at once)."""
        if self._store is None:
            if self._store_lock is None:
                self._store_lock = asyncio.Lock()
            async with self._store_lock:
                if self._store is None:
                    self._store = await self._open_store()
        return self._store

    # ------------------------------------------------------------------ the runtime's side

    def names(self) -> list[str]:
        """Every configured breaker's name."""
        return list(self._breakers)

    def get(self, name: str) -> CircuitBreaker:
        """The breaker called ``name``.

        :raises NotFoundError: no such breaker is configured.
        """
        breaker = self._breakers.get(name)
        if breaker is None:
            raise NotFoundError(
                f"no circuit breaker {name!r} (configured: {', '.join(self._breakers)})"
            )
        if self.role is not Role.CLI and self.state is not ServiceState.CLOSED:
            self.control.attach(breaker)
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # no loop yet: `initialize()` or the next get() starts it
                return breaker
            self.control.start()
        return breaker

    def stats(self) -> dict[str, dict[str, Any]]:
        """Every breaker's statistics in this process, by name (for the runtime's metrics:
        no store round trip, nothing attached to the fleet)."""
        return {name: breaker.stats() for name, breaker in self._breakers.items()}

    async def _open(self) -> None:
        """Start following the fleet (runtime role), and look at it once before any call."""
        if self.role is not Role.CLI:
            self.control.start()
            await self.control.first_read()

    async def _close(self) -> None:
        await self.control.close()
        if self._store is not None:
            await self._store.close()
            self._store = None

    # ------------------------------------------------------------------ operators' side

    async def status(self, name: str | None = None) -> list[dict[str, Any]]:
        """Each breaker (or ``name``) as the fleet sees it: the CONTRACT's keys (``name``,
        ``state``, ``failure_count``, ``success_count``, ``opened_at``, ``forced``,
        ``reason``), the shared record's details, each process's last report
        (``fleet``, stale ones flagged) and the control plane's state.

        :raises NotFoundError: ``name`` is not a breaker.
        :raises BackendUnavailableError: the store cannot be reached.
        """
        store = await self.store()
        try:
            snapshot = await store.read()
            now, reports = await store.fleet()
            plane: dict[str, Any] = {"store": store.describe(), "status": "ok", "error": None}
        except UsageError as exc:  # not set up (an unmigrated database): nothing shared yet
            snapshot, reports = Snapshot(time.time(), {}), []
            now = snapshot.now
            plane = {"store": store.describe(), "status": "not_ready", "error": str(exc)}
        if self.control.running:
            plane["this_process"] = self.control.describe()
        names = self._select(name, snapshot, reports)
        reports = self._with_this_process(reports, now)
        return [
            breaker_item(
                snapshot.record(n),
                now,
                reports,
                plane,
                breaker=self._breakers[n].config if n in self._breakers else None,
                report_interval=self.config.report_interval,
            )
            for n in names
        ]

    async def trip(
        self,
        name: str,
        *,
        reason: str | None = None,
        for_seconds: float | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """Force ``name`` open in every process on the store, until reset or for
        ``for_seconds``; returns its status.

        :raises NotFoundError: ``name`` is not a breaker.
        :raises UsageError: the reason or duration is invalid.
        :raises BackendUnavailableError: the store cannot be reached.
        """
        text = " ".join((reason or "").split())
        if len(text) > MAX_REASON:
            raise UsageError(f"--reason is limited to {MAX_REASON} characters")
        if for_seconds is not None and not 0 < for_seconds <= MAX_TRIP_SECONDS:
            raise UsageError(f"--for must be more than 0 and at most {MAX_TRIP_SECONDS} seconds")
        decide = _shared.trip(
            reason=text or "no reason given",
            actor=actor or default_actor(),
            process=self.process,
            for_seconds=for_seconds,
        )
        await self._write_known(name, decide)
        return (await self.status(name))[0]

    async def reset(
        self, name: str | None = None, *, actor: str | None = None
    ) -> list[dict[str, Any]]:
        """Close ``name`` (None: every breaker) in every process on the store: counters,
        windows and any operator's trip cleared. Returns their status.

        :raises NotFoundError: ``name`` is not a breaker.
        :raises BackendUnavailableError: the store cannot be reached.
        """
        decide = _shared.reset(actor=actor or default_actor(), process=self.process)
        if name is not None:
            await self._write_known(name, decide)
            return await self.status(name)
        snapshot = await (await self.store()).read()
        for each in dict.fromkeys([*self._breakers, *snapshot.records]):
            await self._write(each, decide, snapshot)
        return await self.status()

    async def history(self, name: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """``name``'s transitions, newest first: ``at``, ``from``, ``to``, ``cause``,
        ``actor``, ``process``, ``scope`` (``fleet`` or one process's ``local`` trip).

        :raises NotFoundError: ``name`` is not a breaker.
        :raises BackendUnavailableError: the store cannot be reached.
        """
        if not 1 <= limit <= 10_000:
            raise UsageError("--limit must be between 1 and 10000")
        store = await self.store()
        if name not in self._breakers:
            self._select(name, await store.read(), [])
        return [transition_item(t) for t in await store.history(name, limit)]

    async def health_check(self, budget: float | None = None) -> dict[str, Any]:
        """``{"status", "store", "control_plane", "breakers", "open"?, "reason"?}``.

        Degraded while any breaker is open (in the fleet's record or in a process that
        reports it open) and while the store cannot be reached: the breakers then work
        on each process's own state, which is not unhealthy, but the operators' trips
        and resets do not reach anyone.
        """
        timeout = 0.8 * (budget or 5.0)
        plane: dict[str, Any] = {"status": "ok"}
        snapshot, reports = Snapshot(time.time(), {}), list[ProcessReport]()
        try:
            store = await self.store()
            async with asyncio.timeout(timeout):
                snapshot = await store.read()
                _, reports = await store.fleet()
        except TimeoutError:
            plane = {"status": "unreachable", "error": f"no answer within {timeout:g}s"}
        except UsageError as exc:
            plane = {"status": "not_ready", "error": str(exc)}
        except BackendUnavailableError as exc:
            plane = {"status": "unreachable", "error": str(exc)}
        reports = self._with_this_process(reports, snapshot.now)
        names = list(dict.fromkeys([*self._breakers, *snapshot.records]))
        states = {n: effective_state(snapshot.record(n), snapshot.now) for n in names}
        opened = [NotClosed(n, state) for n, state in states.items() if state != "closed"]
        for n in names:
            if states[n] != "closed":
                continue
            live = self._live(reports, n, snapshot.now)
            tripped = [r for r in live if r.breakers[n].get("state") != "closed"]
            if tripped:
                opened.append(NotClosed(n, f"open in {len(tripped)} of {len(live)} processes"))
        reasons = []
        if opened:
            reasons.append("open: " + ", ".join(map(str, opened)))
        if plane["status"] != "ok":
            reasons.append(f"control plane {plane['status']}: {plane['error']}")
        report: dict[str, Any] = {
            "status": "degraded" if reasons else "healthy",
            "store": self.config.store.value,
            "control_plane": plane,
            "breakers": states,
        }
        if opened:
            report["open"] = [entry.name for entry in opened]
        if reasons:
            report["reason"] = "; ".join(reasons)
        return report

    # ------------------------------------------------------------------ helpers

    def _select(
        self, name: str | None, snapshot: Snapshot, reports: list[ProcessReport]
    ) -> list[str]:
        """The breakers to show: all known (configured, in the store, reported), or ``name``."""
        known = dict.fromkeys(
            [*self._breakers, *snapshot.records, *(n for r in reports for n in r.breakers)]
        )
        if name is None:
            return list(known)
        if name not in known:
            raise NotFoundError(
                f"no circuit breaker {name!r} (configured: {', '.join(self._breakers)})"
            )
        return [name]

    async def _write_known(self, name: str, decide: _shared.Decision) -> None:
        snapshot = await (await self.store()).read()
        self._select(name, snapshot, [])
        await self._write(name, decide, snapshot)

    async def _write(self, name: str, decide: _shared.Decision, snapshot: Snapshot) -> None:
        """Write one decision, and follow it here at once (the fleet follows by polling)."""
        store = await self.store()
        written = await _shared.write(store, decide, snapshot.record(name), snapshot.now)
        if self.role is not Role.CLI:
            self.control.apply(written)

    def _with_this_process(self, reports: list[ProcessReport], now: float) -> list[ProcessReport]:
        """The fleet's reports, this process's own replaced by its live statistics."""
        if not self.control.running:
            return reports
        live = self.control.report()
        return [r for r in reports if r.process != self.process] + [
            ProcessReport(live.process, live.role, live.breakers, now)
        ]

    def _live(self, reports: list[ProcessReport], name: str, now: float) -> list[ProcessReport]:
        interval = self.config.report_interval
        return [r for r in reports if name in r.breakers and not stale(r, now, interval)]
