"""The back ends of `revoctl.runtime.response_cache`: memory, Redis and SQL.

Each keeps an answer (its JSON text) under a key (a SHA-256, hex) until it expires:
Redis with the key's own expiry (``SET ... EX``, under the limits' prefix), SQL as a row of
``response_cache`` with its expiry time (an expired row is never served; every
`SQL_SWEEP_EVERY` writes of a process remove the expired rows), memory in a bounded dict
of this process (the oldest entries go first past `MEMORY_ENTRIES`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from revoctl.core.db import DatabaseManager

MEMORY_ENTRIES = 10_000
"""The most answers one process keeps in memory (``[limits] store = "memory"``)."""

SQL_SWEEP_EVERY = 100
"""A SQL store removes expired rows once every this many writes."""


class MemoryCacheStore:
    """This process's answers, at most `MEMORY_ENTRIES`."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._clock = clock

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        return entry[1]

    async def put(self, key: str, answer: bytes, ttl_seconds: int) -> None:
        self._entries[key] = (self._clock() + ttl_seconds, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > MEMORY_ENTRIES:
            self._entries.popitem(last=False)

    async def close(self) -> None:
        self._entries.clear()


class RedisCacheStore:
    """Each answer as a string key ``PREFIX + key`` that expires with its TTL."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    async def get(self, key: str) -> bytes | None:
        found = await self.client.get(self.prefix + key)
        return found if isinstance(found, bytes) or found is None else str(found).encode()

    async def put(self, key: str, answer: bytes, ttl_seconds: int) -> None:
        await self.client.set(self.prefix + key, answer, ex=ttl_seconds)

    async def close(self) -> None:
        await self.client.aclose()


class SqlCacheStore:
    """Each answer as a row of ``response_cache``."""

    def __init__(self, db: DatabaseManager, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        self._writes = 0

    async def get(self, key: str) -> bytes | None:
        from sqlalchemy import select

        from revoctl.core.db.models import ResponseCacheEntry

        now = self._clock()

        async def read(session: AsyncSession) -> str | None:
            found = await session.execute(
                select(ResponseCacheEntry.answer).where(
                    ResponseCacheEntry.key == key, ResponseCacheEntry.expires_at > now
                )
            )
            answer: str | None = found.scalar_one_or_none()
            return answer

        answer = await self.db.transaction(read)
        return None if answer is None else answer.encode()

    async def put(self, key: str, answer: bytes, ttl_seconds: int) -> None:
        from sqlalchemy import delete
        from sqlalchemy.dialects import postgresql, sqlite

        from revoctl.core.db.models import ResponseCacheEntry

        now = self._clock()
        self._writes += 1
        sweep = self._writes % SQL_SWEEP_EVERY == 0
        insert = postgresql.insert if self.db.backend == "postgresql" else sqlite.insert
        row = {"key": key, "answer": answer.decode(), "expires_at": now + ttl_seconds}
        upsert = insert(ResponseCacheEntry).values(row)
        upsert = upsert.on_conflict_do_update(
            index_elements=[ResponseCacheEntry.key],
            set_={"answer": upsert.excluded.answer, "expires_at": upsert.excluded.expires_at},
        )

        async def write(session: AsyncSession) -> None:
            await session.execute(upsert)
            if sweep:
                await session.execute(
                    delete(ResponseCacheEntry).where(ResponseCacheEntry.expires_at <= now)
                )

        await self.db.transaction(write)

    async def close(self) -> None:
        return None
