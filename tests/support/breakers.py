"""Breaker stores for tests: one table of every store kind, each built on a real back end.

`ALL_BREAKER_STORES` parametrises a test over memory, SQLite, PostgreSQL and Redis.
`store_target(kind, request, tmp_path)` resolves where the store lives (from a sync
fixture: the server fixtures run their own event loop); `open_store` builds the store
there (migrating the database first) and `close_store` releases it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from revoctl.core.breakers import BreakerStateStore
from tests.support import stores

ALL_BREAKER_STORES = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]


@dataclass(frozen=True)
class Target(stores.Target):
    """Where a breaker store of ``kind`` lives, and the settings that point revoctl at it."""

    @property
    def store(self) -> str:
        """The ``[breakers] store`` setting."""
        return {"sqlite": "sql", "postgres": "sql"}.get(self.kind, self.kind)

    def environ(self) -> dict[str, str]:
        """The settings that point revoctl (CLI or runtime) at this store."""
        env = {"REVOCTL_BREAKERS__STORE": self.store}
        if self.kind == "redis":
            env |= {"REVOCTL_REDIS__URL": self.url, "REVOCTL_BREAKERS__KEY_PREFIX": self.prefix}
        elif self.url:
            env["REVOCTL_DATABASE__URL"] = self.url
        return env


def store_target(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """Where a breaker store of ``kind`` lives."""
    return stores.store_target(kind, request, tmp_path, Target)


async def open_store(target: Target, *, history_limit: int = 1000) -> tuple[BreakerStateStore, Any]:
    """``(store, resource)``; the resource (a database manager) is closed by `close_store`."""
    if target.kind == "memory":
        from revoctl.core.breakers import MemoryBreakerStateStore

        return MemoryBreakerStateStore(history_limit=history_limit), None
    if target.kind == "redis":
        from revoctl.core.breakers import RedisBreakerStateStore
        from revoctl.core.redis import RedisConfig, open_redis

        config = RedisConfig(url=target.url)
        client = await open_redis(config)
        store = RedisBreakerStateStore(
            client, config, prefix=target.prefix, history_limit=history_limit
        )
        return store, None
    from revoctl.core.breakers import SqlBreakerStateStore
    from revoctl.core.db import DatabaseConfig, DatabaseManager, upgrade

    db = DatabaseManager(DatabaseConfig(url=target.url), role="test")
    await upgrade(db)
    return SqlBreakerStateStore(lambda: db, history_limit=history_limit), db


async def close_store(store: BreakerStateStore, resource: Any) -> None:
    await store.close()
    if resource is not None:
        await resource.close()
