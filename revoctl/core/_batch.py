"""A bounded buffer of rows and the task that writes them in batches, off the hot path.

`BatchWriter.add` only appends; a background task writes what has gathered every
``interval`` seconds (sooner once a batch is full) with one call of ``sink`` per batch
(one transaction), and `close` writes the rest. When a batch cannot be written (the
database is away) it goes back to the front of the buffer and is tried again after a
pause: rows wait rather than vanish. Only when the buffer is full are the oldest rows
dropped, counted and logged, so an outage can neither slow the caller nor fill memory.

A row the database refuses (a value too long for its column: the sink raises
`RowsRejected`) is not an outage, and must not hold up the rows behind it: the batch is
written again one row at a time, each refused row is logged (named by ``describe``,
e.g. by its request id), counted and dropped, and every other row is kept. A batch that
failed may have been committed all the same (the answer to the COMMIT was lost), so the
sink must make writing it again harmless.

`stats` tells what waits (rows in the buffer and in the batch being written), the age of
the oldest of them, what was written and what was dropped, by reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

Row = TypeVar("Row")

logger = logging.getLogger("revoctl")

RETRY_PAUSE_SECONDS = 2.0
"""How long a failed write waits before the buffer is tried again."""

DROP_REASONS = ("buffer_full", "rejected", "shutdown")
"""Why rows are dropped: the buffer overflowed while the database was away, the database
refused the row itself, or the rows were still waiting when `close` ran out of time."""


class RowsRejected(Exception):
    """Raised by a sink: the database refused the rows themselves (a value too long, text it
    cannot store), not an outage; written one at a time, the others may well be stored."""


class BatchWriter(Generic[Row]):
    """Rows of one kind, written by ``sink`` in batches of at most ``batch_size``.

    ``describe`` names a row in the log line that reports it refused (never its data).
    """

    def __init__(
        self,
        sink: Callable[[Sequence[Row]], Awaitable[None]],
        *,
        what: str,
        describe: Callable[[Row], str] = lambda row: "a row",
        capacity: int = 10_000,
        batch_size: int = 500,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.what = what
        self.describe = describe
        self.batch_size = batch_size
        self.interval = interval
        self.written = 0
        self.drops = dict.fromkeys(DROP_REASONS, 0)
        self._clock = clock
        self._buffer: deque[tuple[float, Row]] = deque()
        self._in_flight: deque[tuple[float, Row]] = deque()
        self._capacity = capacity
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._writing = asyncio.Lock()
        self._failing = False

    @property
    def dropped(self) -> int:
        """Rows dropped so far, whatever the reason."""
        return sum(self.drops.values())

    def add(self, row: Row) -> None:
        """Queue ``row``; never waits, never raises."""
        if len(self._buffer) >= self._capacity:
            self._buffer.popleft()
            self.drops["buffer_full"] += 1
            if self.drops["buffer_full"] == 1 or self.drops["buffer_full"] % 1000 == 0:
                logger.warning(
                    "%s buffer full (%d rows): %d dropped so far", self.what, self._capacity,
                    self.drops["buffer_full"],
                )  # fmt: skip
        self._buffer.append((self._clock(), row))
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
        """Write everything buffered, a batch at a time; False when a batch failed (its
        unwritten rows are back in the buffer, in order)."""
        async with self._writing:
            return await self._flush()

    async def _flush(self) -> bool:
        while self._buffer:
            count = min(self.batch_size, len(self._buffer))
            self._in_flight.extend(self._buffer.popleft() for _ in range(count))
            try:
                await self._write_in_flight()
            except Exception as exc:
                self._put_back()
                if not self._failing:
                    logger.warning(
                        "%s not written (%s: %s); %d rows wait in the buffer",
                        self.what, type(exc).__name__, exc, len(self._buffer),
                    )  # fmt: skip
                self._failing = True
                return False
            except BaseException:  # cancelled: the rows wait for `close` to write them
                self._put_back()
                raise
            if self._failing:
                logger.warning("%s written again", self.what)
            self._failing = False
        return True

    async def _write_in_flight(self) -> None:
        """The rows in flight in one call of the sink; when it refuses some of them, one
        call per row, dropping those it refuses. Written rows leave ``_in_flight``.

        :raises Exception: the sink's failure other than a refusal (the database is away).
        """
        try:
            await self.sink([row for _, row in self._in_flight])
        except RowsRejected:
            pass  # which rows? each alone says
        else:
            self.written += len(self._in_flight)
            self._in_flight.clear()
            return
        while self._in_flight:
            row = self._in_flight[0][1]
            try:
                await self.sink([row])
            except RowsRejected as exc:
                self.drops["rejected"] += 1
                logger.warning(
                    "%s: %s refused by the database and dropped (%s)",
                    self.what, self.describe(row), exc,
                )  # fmt: skip
            else:
                self.written += 1
            self._in_flight.popleft()

    def _put_back(self) -> None:
        """The rows in flight, back at the front of the buffer; the newest beyond the
        capacity are dropped."""
        self._buffer.extendleft(reversed(self._in_flight))
        self._in_flight.clear()
        while len(self._buffer) > self._capacity:
            self._buffer.pop()
            self.drops["buffer_full"] += 1

    async def close(self, timeout: float) -> None:
        """Stop the task and write what is left, for at most ``timeout`` seconds.

        A batch being written is waited for, not cut short: a write cancelled half-way may
        still hold the database (SQLite's write lock, for one) when the rest is written.
        """
        try:
            async with asyncio.timeout(timeout):
                async with self._writing:  # the task is between batches from here on
                    await self._stop_task()
                    while self._buffer and not await self._flush():
                        await asyncio.sleep(RETRY_PAUSE_SECONDS / 4)
        except TimeoutError:
            await self._stop_task()  # a write still going is cut now: its rows come back
            logger.warning(
                "%s: %d rows still buffered at shutdown were dropped", self.what, len(self._buffer)
            )
            self.drops["shutdown"] += len(self._buffer)
            self._buffer.clear()

    async def _stop_task(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def oldest_seconds(self) -> float | None:
        """How long the oldest row still to be written has waited; None when none waits."""
        oldest = self._in_flight or self._buffer
        return round(self._clock() - oldest[0][0], 3) if oldest else None

    def stats(self) -> dict[str, Any]:
        """``{"buffered", "oldest_seconds", "written", "dropped", "drops": {reason: rows}}``:
        ``buffered`` counts the batch being written too."""
        return {
            "buffered": len(self._buffer) + len(self._in_flight),
            "oldest_seconds": self.oldest_seconds(),
            "written": self.written,
            "dropped": self.dropped,
            "drops": dict(self.drops),
        }
