"""A busy pool is back-pressure, not an outage, on real servers: with every pooled connection
held (Redis ``max_connections = 1`` on a single node and on a cluster, a PostgreSQL pool of
one), a decision waits ``pool_wait_seconds`` (half of ``limits.timeout_seconds``), then
``failure_mode`` answers that call alone and the next call goes to the store; an unreachable
server is still an outage (the store is left alone until the next probe). The breakers'
stores wait no longer than `STORE_POOL_WAIT` either, never the database's ``pool_timeout``.

The pool is held by the store's own client: a ``BLPOP`` with no timeout takes the one Redis
connection until the test pushes to the list, a checked-out ``db.connection()`` takes the
one database connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis as redis_sync

from revoctl.core._stores import StoreContext
from revoctl.core.breakers import BreakersConfig, SqlBreakerStateStore, open_breaker_store
from revoctl.core.breakers.base import STORE_POOL_WAIT, SharedState
from revoctl.core.db import DatabaseConfig, DatabaseManager, upgrade
from revoctl.core.errors import PoolExhaustedError
from revoctl.core.limits import LimitsConfig, RateLimiter, RateLimitRule
from revoctl.core.limits.stores import open_limit_store
from revoctl.core.redis import RedisConfig
from tests.support.redis_servers import (
    RedisClusterServers,
    RedisServer,
    free_port,
    private_server,
    require_binaries,
)

RULE = RateLimitRule(name="api", requests=1000, window_seconds=60)
PROBE = 60.0
"""Long: a store marked down would answer nothing from the store for the rest of the test."""
HELD = "revoctl-test-hold"
"""The list a ``BLPOP`` waits on to hold the client's one connection."""


def limits_config(**extra: Any) -> LimitsConfig:
    return LimitsConfig(failure_mode="closed", probe_interval_seconds=PROBE, rules=(RULE,), **extra)


async def open_limiter(config: LimitsConfig, redis: RedisConfig, db: Any = None) -> RateLimiter:
    async def open_store():  # type: ignore[no-untyped-def]
        return await open_limit_store(config, StoreContext(redis, db=lambda: db))

    limiter = RateLimiter(config, open_store=open_store)
    await limiter.initialize()
    return limiter


def poll(condition: Any, seconds: float = 10.0) -> None:
    """Wait until ``condition()`` holds (bounded by ``seconds``)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@contextlib.asynccontextmanager
async def holding(client: Any, admin: Any, servers: list[RedisServer]) -> AsyncIterator[None]:
    """The client's only connection, taken by a ``BLPOP`` until the block ends; the
    ``BLPOP`` is seen on one of ``servers`` first, and ``admin`` pushes what ends it."""
    held = asyncio.create_task(client.blpop([HELD], timeout=0))
    try:
        await asyncio.to_thread(poll, lambda: blocked(servers))
        yield
    finally:
        await asyncio.to_thread(admin.rpush, HELD, "go")
        await held
        await asyncio.to_thread(admin.delete, HELD)


def blocked(servers: list[RedisServer]) -> bool:
    counts = []
    for server in servers:
        with server.client() as client:
            counts.append(int(client.info("clients")["blocked_clients"]))
    return any(counts)


def busy(reason: str | None, backend: str) -> bool:
    return (reason or "").startswith(f"store busy (no free {backend} connection")


# ------------------------------------------------------------------ Redis, one node


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with private_server() as started:
        yield started


@pytest.mark.redis
async def test_a_busy_redis_pool_answers_that_call_and_an_outage_still_marks_the_store_down(
    server: RedisServer,
) -> None:
    config = limits_config(store="redis", timeout_seconds=1.0)
    limiter = await open_limiter(config, RedisConfig(url=server.url, max_connections=1))
    admin = server.client()
    try:
        assert (await limiter.check_rate_limit("api", "k")).reason is None
        async with holding(limiter.store.client, admin, [server]):  # type: ignore[attr-defined]
            answer = await limiter.check_rate_limit("api", "k")
        assert not answer.allowed and busy(answer.reason, "Redis"), answer
        # Not marked down: the next call is the store's, long before the next probe.
        assert (await limiter.check_rate_limit("api", "k")).reason is None
        report = await limiter.health_check()
        assert report["status"] == "healthy" and report["store_failures"] == 0
        assert report["pool_waits_expired"] == 1 and report["pool_wait_seconds"] == 0.5

        server.stop()  # unreachable: an outage, which keeps the store down until a probe
        assert "store unavailable" in ((await limiter.check_rate_limit("api", "k")).reason or "")
        server.start()
        assert "store unavailable" in ((await limiter.check_rate_limit("api", "k")).reason or "")
    finally:
        admin.close()
        await limiter.close()


@pytest.mark.redis
async def test_the_breakers_redis_store_waits_briefly_for_a_busy_pool(server: RedisServer) -> None:
    redis = RedisConfig(url=server.url, max_connections=1)
    store: Any = await open_breaker_store(
        BreakersConfig(store="redis"), StoreContext(redis, db=Any)
    )
    admin = server.client()
    try:
        async with holding(store.client, admin, [server]):
            started = time.monotonic()
            with pytest.raises(PoolExhaustedError, match=f"within {STORE_POOL_WAIT:g}s"):
                await store.read()
            assert time.monotonic() - started >= STORE_POOL_WAIT
        await store.read()
    finally:
        admin.close()
        await store.close()


# ------------------------------------------------------------------ Redis Cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    require_binaries()
    ports: list[int] = []
    for _ in range(3):
        ports.append(free_port((ports[-1] + 1) if ports else 7200, 7249))
    with RedisClusterServers(ports, tmp_path_factory.mktemp("cluster")) as servers:
        yield servers


@pytest.mark.redis
@pytest.mark.slow
async def test_a_busy_cluster_client_answers_that_call_and_the_next_goes_to_the_store(
    cluster: RedisClusterServers,
) -> None:
    config = limits_config(store="redis", timeout_seconds=1.0, key_prefix="pool-waits:")
    redis = RedisConfig(url=cluster.url, cluster=True, max_connections=1)
    limiter = await open_limiter(config, redis)
    node = cluster.nodes[0]
    admin = redis_sync.RedisCluster(host="127.0.0.1", port=node.port)
    try:
        assert (await limiter.check_rate_limit("api", "k")).reason is None
        async with holding(limiter.store.client, admin, cluster.nodes):  # type: ignore[attr-defined]
            answer = await limiter.check_rate_limit("api", "k")
        assert not answer.allowed and busy(answer.reason, "Redis"), answer
        assert (await limiter.check_rate_limit("api", "k")).reason is None
        assert (await limiter.health_check())["store_failures"] == 0
        await limiter.reset("api")
    finally:
        admin.close()
        await limiter.close()


# ------------------------------------------------------------------ PostgreSQL


@pytest.fixture
async def tiny_pool(postgres_url: str) -> AsyncIterator[DatabaseManager]:
    """A migrated database behind a pool of one connection, waiting the default
    ``pool_timeout`` (30 s) for it."""
    config = DatabaseConfig(url=postgres_url, pool_size=1, max_overflow=0)
    async with DatabaseManager(config, role="test") as db:
        await upgrade(db)
        yield db


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_busy_database_pool_answers_that_limiter_call_not_after_pool_timeout(
    tiny_pool: DatabaseManager,
) -> None:
    config = limits_config(store="sql")  # timeout_seconds 2: a pool wait of 1 s
    limiter = await open_limiter(config, RedisConfig(), tiny_pool)
    assert (await limiter.check_rate_limit("api", "k")).reason is None
    async with tiny_pool.connection():  # the pool's one connection
        started = time.monotonic()
        answer = await limiter.check_rate_limit("api", "k")
        waited = time.monotonic() - started
    assert not answer.allowed and busy(answer.reason, "database"), answer
    assert waited >= config.pool_wait_seconds
    assert (await limiter.check_rate_limit("api", "k")).reason is None  # not marked down
    report = await limiter.health_check()
    assert report["store_failures"] == 0 and report["pool_waits_expired"] == 1
    await limiter.close()


@pytest.mark.postgres
@pytest.mark.slow
async def test_the_breakers_sql_store_does_not_wait_pool_timeout(
    tiny_pool: DatabaseManager,
) -> None:
    store = SqlBreakerStateStore(lambda: tiny_pool)
    record = SharedState(f"pool-{uuid.uuid4().hex[:6]}", version=1)
    bound = tiny_pool.config.pool_timeout / 3  # far past the wait, far short of pool_timeout
    async with tiny_pool.connection():
        for call in (store.read, lambda: store.compare_and_set(record, None)):
            async with asyncio.timeout(bound):
                with pytest.raises(PoolExhaustedError, match="pool is exhausted"):
                    await call()
    assert (await store.compare_and_set(record, None)).applied
    assert record.name in (await store.read()).records
