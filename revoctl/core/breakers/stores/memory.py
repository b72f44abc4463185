"""`MemoryBreakerStateStore`: the shared part in this process's memory.

With ``store = "memory"`` there is no fleet: each process is its own. Several managers
in one process may share one instance (tests build a fleet that way); changes are
pushed to every subscriber at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

from revoctl.core.breakers.base import ProcessReport, SharedState, Snapshot, Transition, Written


class MemoryBreakerStateStore:
    """Records, history and process reports in dicts; ``clock`` (epoch seconds) is for tests."""

    kind = "memory"

    def __init__(
        self, *, history_limit: int = 1000, clock: Callable[[], float] = time.time
    ) -> None:
        self.clock = clock
        self.history_limit = history_limit
        self._records: dict[str, SharedState] = {}
        self._history: dict[str, deque[Transition]] = {}
        self._reports: dict[str, tuple[ProcessReport, float]] = {}
        self._subscribers: set[asyncio.Queue[str]] = set()

    def describe(self) -> str:
        return "memory (this process only)"

    async def read(self) -> Snapshot:
        return Snapshot(self.clock(), dict(self._records))

    async def compare_and_set(self, record: SharedState, transition: Transition | None) -> Written:
        now = self.clock()
        current = self._records.get(record.name) or SharedState(record.name)
        if record.version != current.version + 1:
            return Written(False, current, now)
        self._records[record.name] = record
        if transition is not None:
            self._append(transition, now)
        for queue in self._subscribers:
            queue.put_nowait(record.name)
        return Written(True, record, now)

    async def append_history(self, transition: Transition) -> None:
        self._append(transition, self.clock())

    def _append(self, transition: Transition, now: float) -> None:
        entries = self._history.setdefault(transition.name, deque(maxlen=self.history_limit))
        entries.appendleft(dataclasses.replace(transition, at=now))

    async def history(self, name: str, limit: int) -> list[Transition]:
        return list(self._history.get(name, ()))[:limit]

    async def report(self, report: ProcessReport, ttl: float) -> None:
        now = self.clock()
        self._reports[report.process] = (dataclasses.replace(report, reported_at=now), now + ttl)

    async def fleet(self) -> tuple[float, list[ProcessReport]]:
        now = self.clock()
        for process, (_, expires) in list(self._reports.items()):
            if expires < now:
                del self._reports[process]
        return now, [report for report, _ in self._reports.values()]

    def changes(self) -> AsyncIterator[str]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    async def close(self) -> None:
        """Nothing to release."""
