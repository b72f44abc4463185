"""`ControlPlane`: one process's link to the fleet's shared state, off the hot path.

One background loop per manager (`revoctl.core._periodic.every`; not per breaker,
never per call) reads every record each ``poll_interval`` and at once when the store
pushes a change (Redis pub/sub), brings each breaker in line (`StateMachine.follow`),
writes what this process decided (a trip it shares, its own transitions when it does
not share them), writes down operators' trips that ran out, and reports this
process's statistics every ``report_interval``. Calls reach the store only in
half-open, for a trial permit: a breaker asks through the `FleetLink` it was built
with, by name; nothing here sets a breaker's attributes. Whatever is written, this
process takes in and follows in one place (`apply`).

When the store cannot be reached the breakers go on with their own state and
decisions (half-open trials included); `status` says so, and the next successful
read brings every breaker back in line with the fleet's record.

Closing does not trust one cancellation. On Python 3.11 `asyncio.wait_for` drops a
cancellation that arrives just as what it waits for completes (CPython gh-86296, fixed
in 3.12), and redis-py sends every command through it: a task cancelled while it sends
one runs on. The loop then stops at its next turn (`close` has set ``_closing``); the
change feed's task, which would go on to wait on its pub/sub connection for good, is
cancelled again until it has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from revoctl.core._periodic import every
from revoctl.core._process import Role, process_name
from revoctl.core.breakers import _shared
from revoctl.core.breakers._machine import StateMachine
from revoctl.core.breakers._states import Open, TransitionEvent
from revoctl.core.breakers._transitions import effective_state, trial_lease
from revoctl.core.breakers._view import FleetView
from revoctl.core.breakers.base import (
    BreakerStateStore,
    ProcessReport,
    SharedState,
    Transition,
    Written,
)
from revoctl.core.breakers.settings import BreakersConfig
from revoctl.core.errors import BackendUnavailableError, RevoctlError

logger = logging.getLogger("revoctl.breakers")

PERMIT_TIMEOUT = 1.0
"""Longest a call waits for a trial permit before it is refused."""
FIRST_READ_TIMEOUT = 2.0
"""The longest a new process's first calls wait for its first look at the fleet's state."""
RECANCEL_SECONDS = 0.1
"""How long `ControlPlane.close` gives the change feed's task to end before it cancels
it again (its only clean-up is closing its pub/sub connection)."""

Status = Literal["starting", "ok", "unreachable"]


def process_id(role: Role) -> str:
    """`process_name` and four hex digits: unique per manager, even with several managers in
    one process (tests build a fleet that way); ``revoctl db pool`` matches its
    ``revoctl:<host>:<pid>:<role>`` part."""
    return f"{process_name(role)}:{uuid.uuid4().hex[:4]}"


class ControlPlane:
    """Keeps this process's breakers in line with the store; see the module docstring."""

    def __init__(
        self,
        store: Callable[[], Awaitable[BreakerStateStore]],
        config: BreakersConfig,
        *,
        process: str,
        role: Role,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.process = process
        self.role = role
        self.clock = clock
        self.status: Status = "starting"
        self.error: str | None = None
        self.last_sync: float | None = None
        """When the store was last read (``clock``)."""
        self._store = store
        self._breakers: dict[str, StateMachine] = {}
        self.view = FleetView(clock)
        """The fleet's records as last read or written here."""
        self._pending: list[Callable[[], Awaitable[None]]] = []
        self._asking: set[str] = set()
        self._writes: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Event | None = None
        self._read_once: asyncio.Event | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._closing = False
        self._next_report = -math.inf

    # ------------------------------------------------------------------ life cycle

    def attach(self, breaker: StateMachine) -> None:
        """Follow the fleet for ``breaker`` from now on (it is in use)."""
        if breaker.name in self._breakers:
            return
        self._breakers[breaker.name] = breaker
        self._next_report = -math.inf  # the fleet sees a breaker in use at the next read
        breaker.add_listener(self._on_transition)
        if self.view.known(breaker.name):
            breaker.follow(self.view.record(breaker.name), self.view.to_local)

    def follows(self, name: str) -> bool:
        """Whether breaker ``name`` is in use here, following the fleet."""
        return name in self._breakers

    def shares(self, name: str) -> bool:
        """Whether ``name`` follows the fleet now: in use, and the store answers."""
        return self.status == "ok" and name in self._breakers

    @property
    def running(self) -> bool:
        return self._sync_task is not None

    def start(self) -> None:
        """Start the background task on the running loop (once)."""
        if self._sync_task is not None:
            return
        self._wake = asyncio.Event()
        self._read_once = asyncio.Event()
        loop = every(self.config.poll_interval, self._round, what="breakers: sync", wake=self._wake)
        self._sync_task = asyncio.get_running_loop().create_task(loop, name="breakers-sync")

    async def first_read(self) -> None:
        """Wait (at most `FIRST_READ_TIMEOUT`) until the store has been read once, or has
        failed once: a process that has just started must not let calls through a breaker
        the fleet has open, or an operator has tripped, before it has looked."""
        if self._read_once is None or self._read_once.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FIRST_READ_TIMEOUT):
                await self._read_once.wait()

    async def close(self) -> None:
        """Stop the background tasks; writes under way are given a moment to land.

        The loop stops first: it is what starts the change feed's task, so once it has
        ended no new one can appear behind this close. See the module docstring for why
        a cancellation alone is not enough.
        """
        if self._writes:
            await asyncio.wait(self._writes, timeout=PERMIT_TIMEOUT)
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._sync_task is not None:
            self._sync_task.cancel()
            await asyncio.gather(self._sync_task, return_exceptions=True)
        listener = self._listener
        while listener is not None and not listener.done():
            listener.cancel()
            await asyncio.wait([listener], timeout=RECANCEL_SECONDS)
        writes = list(self._writes)
        for task in writes:
            task.cancel()
        await asyncio.gather(*writes, return_exceptions=True)
        self._sync_task = self._listener = None

    # ------------------------------------------------------------------ the loop

    async def _round(self) -> None:
        """One turn of the background loop: sync, and keep the change feed listening.
        Whatever fails, the loop goes on (it is the backstop), each breaker on its own."""
        if self._closing:  # a cancellation lost in redis-py (see the module docstring)
            raise asyncio.CancelledError
        try:
            await self.sync()
            if not self._closing and (self._listener is None or self._listener.done()):
                self._listener = await self._listen()
        except Exception as exc:
            self._offline(exc)
        finally:
            if self._read_once is not None:
                self._read_once.set()

    async def _listen(self) -> asyncio.Task[None] | None:
        """A task that wakes the loop whenever the store pushes a change (if it can)."""
        store = await self._store()
        changes = store.changes()
        if changes is None:
            return None
        wake = self._wake
        assert wake is not None

        async def listen() -> None:
            try:
                async for _ in changes:
                    wake.set()
            except Exception as exc:  # the next poll sees the outage; this task ends
                logger.debug("breakers: change feed ended: %s", exc)

        return asyncio.get_running_loop().create_task(listen(), name="breakers-changes")

    async def sync(self) -> None:
        """Read every record, follow it, write what is pending, report when due.

        :raises BackendUnavailableError: the store cannot be reached.
        """
        store = await self._store()
        snapshot = await store.read()
        self.view.read(snapshot)
        self.last_sync = self.clock()
        if self.status != "ok":
            self._online()
        for name, breaker in self._breakers.items():
            breaker.follow(snapshot.record(name), self.view.to_local)
        self.view.changed()
        while self._pending:  # one at a time: what fails stays queued for the next round
            await self._pending[0]()
            del self._pending[0]
        for record in snapshot.records.values():
            if record.forced and effective_state(record, snapshot.now) == "closed":
                await self._write(_shared.expire_trip(process=self.process), record.name)
        if self.clock() >= self._next_report:
            self._next_report = self.clock() + self.config.report_interval
            await store.report(self.report(), self.config.process_ttl)

    def report(self) -> ProcessReport:
        """This process's statistics for each breaker it uses."""
        return ProcessReport(
            self.process,
            self.role,
            {name: breaker.stats() for name, breaker in self._breakers.items()},
        )

    def _online(self) -> None:
        if self.status == "unreachable":
            logger.warning("breakers: the store is reachable again; following the fleet")
        self.status, self.error = "ok", None

    def _offline(self, exc: BaseException) -> None:
        """The store failed: every breaker decides alone until it answers again."""
        message = str(exc) if isinstance(exc, RevoctlError) else f"{type(exc).__name__}: {exc}"
        if self.status != "unreachable":
            logger.warning("breakers: the store failed, breakers keep their own state: %s", message)
        self.status, self.error = "unreachable", message
        for breaker in self._breakers.values():
            breaker.go_alone()

    # ------------------------------------------------------------------ writes

    async def _write(self, decide: _shared.Decision, name: str) -> SharedState:
        """Apply ``decide`` to ``name``'s record and follow what stands afterwards."""
        store = await self._store()
        written = await _shared.write(store, decide, self.view.record(name), self.view.store_now())
        self.apply(written)
        return written.current

    def apply(self, written: Written) -> None:
        """What a write left in the store (``written.current``, at the store's
        ``written.now``) becomes this process's view of it, and its breaker follows it."""
        self.view.wrote(written)
        breaker = self._breakers.get(written.current.name)
        if breaker is not None:
            breaker.follow(written.current, self.view.to_local, force=True)
        self.view.changed()

    def _on_transition(self, event: TransitionEvent) -> None:
        """A breaker changed state (on the hot path: queue, never await)."""
        if event.source != "local":
            return
        breaker = self._breakers[event.breaker]
        if breaker.config.share_trips and event.from_state == "closed" and event.to_state == "open":
            self._queue(self._publish_trip(breaker, event.cause, breaker.generation))
            return
        if event.from_state == "forced_open" and event.to_state == "closed":
            return  # written down by whichever process's next read sees it run out
        if not breaker.config.share_trips:
            transition = Transition(
                event.breaker, event.from_state, event.to_state, event.cause, self.process, "local"
            )
            self._queue(self._append(transition))

    def _queue(self, write: Callable[[], Awaitable[None]]) -> None:
        self._pending.append(write)
        if self._wake is not None:
            self._wake.set()

    def _publish_trip(
        self, breaker: StateMachine, cause: str, generation: int
    ) -> Callable[[], Awaitable[None]]:
        async def publish() -> None:
            state = breaker.state
            if not isinstance(state, Open) or state.origin != "local":
                return  # recovered or following the fleet since: nothing to share
            if breaker.generation != generation:
                return  # reset since
            decide = _shared.open_after_failures(
                cause=cause, generation=generation, config=breaker.config, process=self.process
            )
            await self._write(decide, breaker.name)

        return publish

    def _append(self, transition: Transition) -> Callable[[], Awaitable[None]]:
        async def append() -> None:
            await (await self._store()).append_history(transition)

        return append

    # ------------------------------------------------------------------ trial calls

    async def acquire_trial(self, name: str) -> bool | None:
        """A trial permit from the fleet's lease for ``name``'s current half-open state:
        True when granted, False when the round is full (or a request from this process
        is already out), None when the store cannot be reached (the breaker then runs
        its own trials)."""
        breaker = self._breakers.get(name)
        if self.status != "ok" or breaker is None:
            return None
        if name in self._asking:
            return False
        self._asking.add(name)
        state = breaker.state
        decide = _shared.grant_trial(
            trials=breaker.config.success_threshold,
            lease=trial_lease(breaker.config),
            process=self.process,
        )
        try:
            async with asyncio.timeout(PERMIT_TIMEOUT):
                store = await self._store()
                record = self.view.record(name)
                written = await _shared.write(store, decide, record, self.view.store_now())
        except TimeoutError:
            return False
        except BackendUnavailableError as exc:
            self._offline(exc)
            return None
        finally:
            self._asking.discard(name)
        if written.applied:
            breaker.join_round(state, written.current.episode)
        self.apply(written)
        if written.applied and state is not breaker.state:  # moved on while asking
            self.report_trial(name, written.current.episode, None, "permit unused")
            return False
        return written.applied

    def report_trial(self, name: str, episode: int, success: bool | None, cause: str) -> None:
        """Tell the fleet how a trial call went (None: it did not count; the permit is
        given back). Runs in the background: the call's caller does not wait for it."""
        breaker = self._breakers.get(name)
        if breaker is None:
            return
        if success is None:
            decide = _shared.release_trial(episode=episode)
        else:
            decide = _shared.trial_outcome(
                episode=episode,
                success=success,
                config=breaker.config,
                cause=cause,
                process=self.process,
            )

        async def send() -> None:
            try:
                await self._write(decide, name)
            except Exception as exc:
                self._offline(exc)

        task = asyncio.get_running_loop().create_task(send())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    # ------------------------------------------------------------------ status

    def describe(self) -> dict[str, Any]:
        """``{"status", "error", "last_sync_seconds_ago"}`` for status and health."""
        ago = None if self.last_sync is None else round(self.clock() - self.last_sync, 3)
        return {"status": self.status, "error": self.error, "last_sync_seconds_ago": ago}
