"""`StatusFeed`: one instance's running copy of `fleet_status`, for its open status pages.

While at least one page listens (``GET /status/events``), one task per process reads the
breakers every `TICK_SECONDS` and the other sections every `SLOW_SECONDS`
(`revoctl.core.status.FAST_SECTIONS`), and publishes the merged document after each
tick: a trip made at the terminal reaches an open page within a tick plus the store read
(`tests/e2e/test_status_page_browser.py` measures it in a browser). However many
pages are open, the fleet is read once per tick; with none, nothing is read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from revoctl.core.status import FAST_SECTIONS, SECTIONS, fleet_status

if TYPE_CHECKING:
    from revoctl.core.services import Services

TICK_SECONDS = 0.25
SLOW_SECONDS = 2.0
HEARTBEAT_SECONDS = 15.0
"""A comment line this often on a quiet stream, so that proxies keep it open."""

Gather = Callable[["Services", Sequence[str]], Awaitable[dict[str, Any]]]


class StatusFeed:
    """The latest status document and its version; a task refreshes it while anyone listens."""

    def __init__(
        self,
        services: Services,
        served_by: str,
        *,
        tick: float = TICK_SECONDS,
        slow: float = SLOW_SECONDS,
        gather: Gather = fleet_status,
    ) -> None:
        self.services = services
        self.served_by = served_by
        self.tick, self.slow = tick, slow
        self._gather = gather
        self.document: dict[str, Any] | None = None
        self.version = 0
        self._published = asyncio.Event()
        self._listeners = 0
        self._task: asyncio.Task[None] | None = None

    async def snapshot(self) -> dict[str, Any]:
        """Every section, read now (``/status.json``)."""
        return self._stamped(await self._gather(self.services, SECTIONS))

    async def updates(self, closed: asyncio.Event) -> AsyncIterator[dict[str, Any] | None]:
        """Each new document while ``closed`` is not set; None after `HEARTBEAT_SECONDS`
        without one (a heartbeat)."""
        self._listeners += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        closing = asyncio.create_task(closed.wait())
        seen = 0
        try:
            while not closed.is_set():
                if self.document is not None and self.version != seen:
                    seen = self.version
                    yield self.document
                    continue
                published = asyncio.create_task(self._published.wait())
                await asyncio.wait(
                    {published, closing},
                    timeout=HEARTBEAT_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                published.cancel()
                if not published.done() and not closed.is_set() and self.version == seen:
                    yield None
        finally:
            closing.cancel()
            self._listeners -= 1
            if self._listeners == 0 and self._task is not None:
                self._task.cancel()
                self._task = None

    async def _run(self) -> None:
        """Refresh while anyone listens: the fast sections each tick, the rest when due."""
        slow_sections = [name for name in SECTIONS if name not in FAST_SECTIONS]
        merged: dict[str, Any] = {}
        slow_due = 0.0
        while True:
            started = time.monotonic()
            wanted = list(FAST_SECTIONS)
            if started >= slow_due:
                wanted += slow_sections
                slow_due = started + self.slow
            merged.update(await self._gather(self.services, wanted))
            self._publish(self._stamped(dict(merged)))
            await asyncio.sleep(max(0.0, self.tick - (time.monotonic() - started)))

    def _publish(self, document: dict[str, Any]) -> None:
        self.document = document
        self.version += 1
        self._published.set()
        self._published = asyncio.Event()

    def _stamped(self, document: dict[str, Any]) -> dict[str, Any]:
        return {"served_by": self.served_by, **document}
