"""The shared back ends of `revoctl.runtime.fleet_load`: Redis and SQL.

Both keep one entry per process: its report (JSON) and the epoch second it was written.
A refresh writes this process's entry and reads every other entry in one round trip
(Redis: one pipeline over one hash; SQL: one transaction over ``routing_loads``); entries
older than the staleness bound are left out and removed, so a process that died stops
counting within a few refreshes. Times are the writers' clocks: a fleet's hosts are
expected to agree within a fraction of a second.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from revoctl.core.db import DatabaseManager

Loads = dict[str, dict[str, Any]]
"""One process's report: deployment key -> ``{"in_flight", "latency", "samples"}``."""


def _entry(loads: Loads, now: float) -> str:
    return json.dumps({"seen": now, "loads": loads}, separators=(",", ":"))


def _loads_of(text: Any) -> Loads:
    """A stored report; a malformed one counts as empty."""
    try:
        loads = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return loads if isinstance(loads, dict) else {}


class RedisFleetLoadStore:
    """Every process's entry as a field of one hash, ``key`` (under the limits' prefix)."""

    def __init__(self, client: Any, key: str, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.key = key
        self._clock = clock

    async def exchange(self, process: str, loads: Loads, stale_seconds: float) -> list[Loads]:
        """Write ``process``'s entry, read the others', remove the stale ones."""
        now = self._clock()
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(self.key, process, _entry(loads, now))
            pipe.expire(self.key, max(1, int(stale_seconds * 10)))
            pipe.hgetall(self.key)
            _, _, entries = await pipe.execute()
        others: list[Loads] = []
        stale: list[str] = []
        for field, raw in entries.items():
            name = field.decode() if isinstance(field, bytes) else str(field)
            if name == process:
                continue
            entry = _loads_of(raw)
            seen = entry.get("seen")
            if not isinstance(seen, int | float) or now - seen > stale_seconds:
                stale.append(name)
            else:
                reported = entry.get("loads")
                others.append(reported if isinstance(reported, dict) else {})
        if stale:
            await self.client.hdel(self.key, *stale)
        return others

    async def close(self) -> None:
        await self.client.aclose()


class SqlFleetLoadStore:
    """Every process's entry as a row of ``routing_loads``."""

    def __init__(self, db: DatabaseManager, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock

    async def exchange(self, process: str, loads: Loads, stale_seconds: float) -> list[Loads]:
        """Upsert ``process``'s row, read the others' fresh rows, delete the stale ones."""
        from sqlalchemy import delete, select

        from revoctl.core.db.models import RoutingLoad

        now = self._clock()
        oldest = now - stale_seconds

        async def swap(session: AsyncSession) -> list[Loads]:
            await session.merge(RoutingLoad(process=process, loads=json.dumps(loads), seen_at=now))
            await session.execute(delete(RoutingLoad).where(RoutingLoad.seen_at < oldest))
            rows = await session.execute(
                select(RoutingLoad.loads).where(RoutingLoad.process != process)
            )
            return [_loads_of(text) for text in rows.scalars()]

        return await self.db.transaction(swap)

    async def close(self) -> None:
        return None
