"""The life cycle every service shares: opened once on first use, closed once.

`initialize()` may be called by many tasks at once (the first requests of a
runtime arrive together): one of them opens the service under a lock, the others
wait and re-check the state, so a service never builds two engines or two clients.
Subclasses implement `_open()` and `_close()`; ``async with`` does both ends.
"""

from __future__ import annotations

import asyncio
import enum
from types import TracebackType
from typing import Self


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
