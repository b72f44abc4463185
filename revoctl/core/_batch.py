"""A bounded buffer of rows and the task that writes them in batches, off the hot path.

`BatchWriter.add` only appends; a background task writes what has gathered every
``interval`` seconds (sooner once a batch is full) with one call of ``sink`` per batch
(one transaction), and `close` writes the rest. When a batch cannot be written (the
database is away) it goes back to the front of the buffer and is tried again after a
pause: rows wait rather than vanish. Only when the buffer is full are the oldest rows
dropped, counted and logged, so an outage can neither slow the caller nor fill memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Row = TypeVar("Row")

logger = logging.getLogger("revoctl")

RETRY_PAUSE_SECONDS = 2.0
"""How long a failed write waits before the buffer is tried again."""


class BatchWriter(Generic[Row]):
    """Rows of one kind, written by ``sink`` in batches of at most ``batch_size``."""

    def __init__(
        self,
        sink: Callable[[Sequence[Row]], Awaitable[None]],
        *,
        what: str,
        capacity: int = 10_000,
        batch_size: int = 500,
        interval: float = 1.0,
    ) -> None:
        self.sink = sink
        self.what = what
        self.batch_size = batch_size
        self.interval = interval
        self.written = 0
        self.dropped = 0
        self._buffer: deque[Row] = deque()
        self._capacity = capacity
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._failing = False

    def add(self, row: Row) -> None:
        """Queue ``row``; never waits, never raises."""
        if len(self._buffer) >= self._capacity:
            self._buffer.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning(
                    "%s buffer full (%d rows): %d dropped so far", self.what, self._capacity,
                    self.dropped,
                )  # fmt: skip
        self._buffer.append(row)
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._drain())
        if len(self._buffer) >= self.batch_size and self._wake is not None:
            self._wake.set()

    async def _drain(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            if not await self.flush():
                await asyncio.sleep(RETRY_PAUSE_SECONDS)

    async def flush(self) -> bool:
        """Write everything buffered, a batch at a time; False when a batch failed (it is
        back in the buffer, in order)."""
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
            try:
                await self.sink(batch)
            except Exception as exc:
                self._buffer.extendleft(reversed(batch))
                while len(self._buffer) > self._capacity:
                    self._buffer.pop()
                    self.dropped += 1
                if not self._failing:
                    logger.warning(
                        "%s not written (%s: %s); %d rows wait in the buffer",
                        self.what, type(exc).__name__, exc, len(self._buffer),
                    )  # fmt: skip
                self._failing = True
                return False
            self.written += len(batch)
            if self._failing:
                logger.warning("%s written again", self.what)
            self._failing = False
        return True

    async def close(self, timeout: float) -> None:
        """Stop the task and write what is left, for at most ``timeout`` seconds."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            async with asyncio.timeout(timeout):
                while self._buffer and not await self.flush():
                    await asyncio.sleep(RETRY_PAUSE_SECONDS / 4)
        except TimeoutError:
            logger.warning(
                "%s: %d rows still buffered at shutdown were dropped", self.what, len(self._buffer)
            )
            self.dropped += len(self._buffer)
            self._buffer.clear()

    def stats(self) -> dict[str, int]:
        return {"buffered": len(self._buffer), "written": self.written, "dropped": self.dropped}
