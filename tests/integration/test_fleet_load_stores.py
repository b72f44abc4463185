"""The fleet's deployment loads on the real Redis and PostgreSQL: two processes publish, a
third reads their sums (and never its own entry back), and a publisher that stopped
reporting drops out once its entry is older than the staleness bound; migration 0010 builds
``routing_loads`` as the model has it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from revoctl.core.db import DatabaseConfig, DatabaseManager, downgrade, upgrade
from revoctl.core.db.models import Base
from revoctl.runtime.deployments import Deployment
from revoctl.runtime.fleet_load import FleetLoads, merged
from revoctl.runtime.fleet_load_stores import RedisFleetLoadStore, SqlFleetLoadStore

REPO = Path(__file__).parents[2]
STALE = 30.0
"""The staleness bound the publishers and the reader use, in seconds."""
EAST, WEST = "gpt\x1feast", "gpt\x1fwest"


def publish(kind: str, url: str, key: str, process: str, loads: dict[str, Any]) -> None:
    """One report from a process of its own."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.fleet_load_worker", kind, url, key, process,
         json.dumps(loads)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def two_publishers(kind: str, url: str, key: str) -> None:
    publish(kind, url, key, "proc-a", {EAST: {"in_flight": 2, "latency": 0.1, "samples": 10}})
    publish(
        kind, url, key, "proc-b",
        {EAST: {"in_flight": 3, "latency": 0.3, "samples": 10},
         WEST: {"in_flight": 1, "latency": None, "samples": 0}},
    )  # fmt: skip


def sums_are_read(others: list[dict[str, Any]]) -> None:
    loads = merged(others)
    assert loads[EAST].in_flight == 5 and loads[WEST].in_flight == 1
    assert loads[EAST].latency == pytest.approx(0.2) and loads[WEST].latency is None


class Later:
    """A clock ``offset`` seconds ahead of the real one."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def __call__(self) -> float:
        import time

        return time.time() + self.offset


@pytest.mark.redis
async def test_redis_sums_two_publishers_and_drops_a_dead_one(
    redis_url: str, redis_prefix: str
) -> None:
    from redis.asyncio import Redis

    key = f"{redis_prefix}rl:routing"
    two_publishers("redis", redis_url, key)
    reader = RedisFleetLoadStore(Redis.from_url(redis_url), key)
    try:
        others = await reader.exchange("reader", {EAST: {"in_flight": 7}}, STALE)
        assert len(others) == 2  # its own entry is never read back
        sums_are_read(others)
        later = RedisFleetLoadStore(Redis.from_url(redis_url), key, clock=Later(STALE + 1))
        assert await later.exchange("reader", {}, STALE) == []  # both publishers stopped
        assert await later.client.hkeys(key) == [b"reader"]  # and their entries are gone
        assert 0 < await later.client.ttl(key) <= STALE * 10  # the hash itself expires
        await later.close()
    finally:
        await reader.close()


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[DatabaseManager]:
    async with DatabaseManager(DatabaseConfig(url=postgres_url), role="test") as manager:
        await upgrade(manager, "head")
        yield manager


def drift(connection: Connection) -> list[object]:
    diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    return [d for d in diffs if "routing_loads" in repr(d)]


@pytest.mark.postgres
async def test_0010_builds_routing_loads_as_modelled_and_drops_it(db: DatabaseManager) -> None:
    async with db.connection() as conn:
        assert await conn.run_sync(drift) == []
    await downgrade(db, "0009")
    async with db.connection() as conn:
        assert await conn.run_sync(lambda c: c.dialect.has_table(c, "routing_loads")) is False


@pytest.mark.postgres
async def test_sql_sums_two_publishers_and_drops_a_dead_one(
    db: DatabaseManager, postgres_url: str
) -> None:
    two_publishers("sql", postgres_url, "")
    reader = SqlFleetLoadStore(db)
    others = await reader.exchange("reader", {EAST: {"in_flight": 7}}, STALE)
    assert len(others) == 2
    sums_are_read(others)
    later = SqlFleetLoadStore(db, clock=Later(STALE + 1))
    assert await later.exchange("reader", {}, STALE) == []
    async with db.connection() as conn:
        rows = await conn.exec_driver_sql("SELECT process FROM routing_loads")
        assert [row[0] for row in rows] == ["reader"]


@pytest.mark.postgres
async def test_the_request_path_sees_the_fleet_plus_its_own_live_count(
    db: DatabaseManager, postgres_url: str
) -> None:
    two_publishers("sql", postgres_url, "")
    east = Deployment("gpt", "east", "llm", "east", 1.0)
    west = Deployment("gpt", "west", "llm", "west", 1.0)

    async def open_store() -> SqlFleetLoadStore:
        return SqlFleetLoadStore(db)

    loads = FleetLoads([east, west], open_store, STALE / 3, process="reader")
    await loads.refresh()
    east.in_flight = 1  # a call of this process's own, begun after the refresh
    assert (east.fleet_in_flight(), west.fleet_in_flight()) == (6, 1)
    await loads.close()
