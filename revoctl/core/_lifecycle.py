"""The life cycle every service shares: opened once on first use, closed once.

`initialize()` may be called by many tasks at once (the first requests of a
runtime arrive together): one of them opens the service under a lock, the others
wait and re-check the state, so a service never builds two engines or two clients.
Subclasses implement `_open()` and `_close()`; ``async with`` does both ends.

`stop_tasks()` is how a service (or the runtime) stops its background tasks when it
closes: cancelled until they have ended, not cancelled once, see its docstring.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

RECANCEL_SECONDS = 0.1
"""How long `stop_tasks` gives a cancelled task to end before it cancels it again."""


class ServiceState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class AsyncService:
    """A service opened by `initialize()` and released by `close()`."""

    _state: ServiceState = ServiceState.NEW
    _opening: asyncio.Lock | None = None

    @property
    def state(self) -> ServiceState:
        return self._state

    async def initialize(self) -> None:
        """Open the service unless it is open; concurrent callers share one opening.

        :raises RuntimeError: the service was closed.
        """
        if self._state is ServiceState.OPEN:
            return
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self.state is ServiceState.OPEN:  # opened while this caller waited
                return
            if self.state is ServiceState.CLOSED:
                raise RuntimeError(f"{type(self).__name__} is closed")
            await self._open()
            self._state = ServiceState.OPEN

    async def close(self) -> None:
        """Release what `initialize()` acquired; the service cannot be reopened."""
        if self._state is not ServiceState.CLOSED:
            self._state = ServiceState.CLOSED
            await self._close()

    async def _open(self) -> None:
        """Acquire what the service needs; runs once."""

    async def _close(self) -> None:
        """Release it; runs once, also after a failed or missing `_open()`."""

    async def __aenter__(self) -> Self:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again each one that
    is still running after `RECANCEL_SECONDS`; what they raise is dropped (they are stopped).

    One `Task.cancel()` is not always enough on Python 3.11: `asyncio.wait_for` returns its
    inner result and drops the cancellation when the cancellation arrives as that result
    does (CPython gh-86296, fixed in 3.12 only). redis-py sends every command through it,
    so a task cancelled while it sends one (a pub/sub ``SUBSCRIBE``, a script call) runs on
    into its next wait, and a pub/sub read waits with no end: the task, and whoever awaits
    it, never finishes. Cancelling again until the task is done (the way anyio and trio
    deliver a cancellation at every wait, not once) ends it at that next wait. A task's
    own clean-up should take less than `RECANCEL_SECONDS`, or it is cancelled in turn.
    """
    tasks = list(tasks)
    running = {task for task in tasks if not task.done()}
    while running:
        for task in running:
            task.cancel()
        _, running = await asyncio.wait(running, timeout=RECANCEL_SECONDS)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: asyncio does not log it as never retrieved
