"""The rate-limit event log: denials and store failures, written to ``rate_limit_logs``
in batches, off the decision path.

`RateLimitLogWriter.record` only appends to a bounded buffer; a background task
writes what has gathered every ``interval`` seconds (sooner once a batch is full),
and `close` writes the rest. When the buffer is full the oldest events are dropped
and counted, so a database outage can neither slow the decisions nor fill memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from revoctl.core.db import DatabaseManager

logger = logging.getLogger("revoctl.limits")

EventKind = Literal["denied", "store_failure"]


@dataclass(frozen=True, slots=True)
class RateLimitEvent:
    """One row of ``rate_limit_logs``."""

    rule: str
    key: str
    allowed: bool
    remaining: int
    weight: int
    event: EventKind
    reason: str | None
    ts: datetime


EventSink = Callable[[Sequence[RateLimitEvent]], Awaitable[None]]
"""Writes one batch of events (e.g. `SqlRateLimitLogSink`)."""


class RateLimitLogWriter:
    """A bounded buffer of events and the task that drains it into ``sink``."""

    def __init__(
        self,
        sink: EventSink,
        *,
        capacity: int = 10_000,
        batch_size: int = 500,
        interval: float = 1.0,
    ) -> None:
        self.sink = sink
        self.batch_size = batch_size
        self.interval = interval
        self.written = 0
        self.dropped = 0
        self._buffer: deque[RateLimitEvent] = deque(maxlen=capacity)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._failing = False

    def record(self, event: RateLimitEvent) -> None:
        """Queue ``event``; never waits, never raises."""
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(event)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    async def _drain(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write everything buffered, a batch at a time; a failed batch is dropped and counted."""
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
            try:
                await self.sink(batch)
            except Exception as exc:
                self.dropped += len(batch)
                if not self._failing:
                    logger.warning(
                        "rate-limit events not written (%s: %s); dropping them until the "
                        "log is writable again",
                        type(exc).__name__,
                        exc,
                    )
                self._failing = True
                return
            self.written += len(batch)
            self._failing = False

    async def close(self) -> None:
        """Stop the task and write what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    def stats(self) -> dict[str, int]:
        return {"buffered": len(self._buffer), "written": self.written, "dropped": self.dropped}


class SqlRateLimitLogSink:
    """Inserts batches into ``rate_limit_logs`` through the database reached by ``db()``
    (called on first write, so a limiter that logs nothing never opens the database)."""

    def __init__(self, db: Callable[[], DatabaseManager]) -> None:
        self._db = db

    async def __call__(self, events: Sequence[RateLimitEvent]) -> None:
        from sqlalchemy import insert

        from revoctl.core.db.models import RateLimitLog

        rows: list[dict[str, Any]] = [
            {**asdict(event), "reason": event.reason[:255] if event.reason else None}
            for event in events
        ]
        async with self._db().get_async_session() as session:
            await session.execute(insert(RateLimitLog), rows)
