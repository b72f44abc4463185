"""Limit stores for tests: one table of every store kind, each built on a real back end.

`ALL_LIMIT_STORES` parametrises a test over memory, Redis, PostgreSQL and SQLite, as
`ALL_BREAKER_STORES` does for the breakers. `store_target(kind, request, tmp_path)` resolves
where the store lives (from a sync fixture: the server fixtures run their own event
loop); `open_store` builds the store there (migrating the database first) and
`close_store` releases it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from revoctl.core.limits import LimitStore
from tests.support import stores
from tests.support.stores import Target

ALL_LIMIT_STORES = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("sqlite", id="sqlite"),
]


def store_target(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """Where a limit store of ``kind`` lives."""
    return stores.store_target(kind, request, tmp_path, Target)


async def open_store(target: Target) -> tuple[LimitStore, Any]:
    """``(store, resource)``; the resource (a database manager) is closed by `close_store`."""
    if target.kind == "memory":
        from revoctl.core.limits import MemoryLimitStore

        return MemoryLimitStore(), None
    if target.kind == "redis":
        from revoctl.core.limits import RedisLimitStore
        from revoctl.core.redis import RedisConfig, open_redis

        config = RedisConfig(url=target.url)
        return RedisLimitStore(await open_redis(config), config, prefix=target.prefix), None
    from revoctl.core.db import DatabaseConfig, DatabaseManager, upgrade
    from revoctl.core.limits import SqlLimitStore

    db = DatabaseManager(DatabaseConfig(url=target.url), role="test")
    await upgrade(db)
    return SqlLimitStore(db), db


async def close_store(store: LimitStore, resource: Any) -> None:
    await store.close()
    if resource is not None:
        await resource.close()
