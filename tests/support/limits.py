"""Limit stores for tests: one table of every store kind, each built on a real back end.

`ALL_LIMIT_STORES` parametrises a test over memory, Redis, PostgreSQL and SQLite, as
`ALL_BREAKER_STORES` does for the breakers. `store_url(kind, request, tmp_path)` resolves
where the store lives (from a sync fixture: the server fixtures run their own event
loop); `open_store` builds the store there (migrating the database first) and
`close_store` releases it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from revoctl.core.limits import LimitStore

ALL_LIMIT_STORES = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("sqlite", id="sqlite"),
]


@dataclass(frozen=True)
class Target:
    """Where a store of ``kind`` lives: a database URL, or Redis's URL and key prefix."""

    kind: str
    url: str = ""
    prefix: str = ""


def store_target(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if kind == "redis":
        return Target(
            kind, request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        )
    if kind == "postgres":
        return Target(kind, request.getfixturevalue("postgres_url"))
    if kind == "sqlite":
        return Target(kind, f"sqlite+aiosqlite:///{tmp_path / f'limits-{uuid.uuid4().hex[:6]}.db'}")
    return Target(kind)


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
