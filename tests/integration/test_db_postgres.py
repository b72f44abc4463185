"""The database layer against a real PostgreSQL: migrations, CLI, pools seen from another
process, retries through a flaky proxy, real serialization failures, slow queries."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import make_url, text

from revoctl.core import RetryPolicy
from revoctl.core.db import (
    DatabaseConfig,
    DatabaseManager,
    current,
    downgrade,
    heads,
    upgrade,
)
from revoctl.core.db._errors import is_missing_table
from revoctl.core.errors import BackendUnavailableError
from tests.conftest import run_revoctl
from tests.support.tcp_proxy import TcpProxy
from tests.unit.test_db_migrations import INITIAL_TABLES, model_drift, tables

pytestmark = pytest.mark.postgres

FAST_RETRIES = RetryPolicy(retries=3, base_delay=0.02, max_delay=0.1)


def as_json(result: Any) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[DatabaseManager]:
    async with DatabaseManager(DatabaseConfig(url=postgres_url), role="runtime") as manager:
        yield manager


async def test_migrate_up_and_down_cleanly(db: DatabaseManager) -> None:
    head = heads()[0]
    result = await upgrade(db)
    assert result["to"] == head and result["applied"][0] == "0001"
    async with db.connection() as conn:
        assert await conn.run_sync(tables) >= INITIAL_TABLES
        assert await conn.run_sync(model_drift) == []
    assert await current(db) == {"current": head, "head": head, "pending": 0}
    await downgrade(db, "base")
    async with db.connection() as conn:
        assert await conn.run_sync(tables) == {"alembic_version"}
    await upgrade(db)  # and up again from base
    assert (await current(db))["current"] == head


async def test_connections_carry_the_application_name(db: DatabaseManager) -> None:
    async with db.connection() as conn:
        name = (
            await conn.execute(
                text("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            )
        ).scalar_one()
    assert name.startswith("revoctl:") and name.endswith(":runtime")


async def test_ping_and_health(db: DatabaseManager) -> None:
    ping = await db.ping()
    assert ping["ok"] is True and ping["backend"] == "postgresql"
    assert ping["server_version"].split(".")[0].isdigit()
    assert (await db.health_check())["status"] == "degraded"  # nothing migrated yet
    await upgrade(db)
    report = await db.health_check()
    assert report["status"] == "healthy" and report["migrations"]["pending"] == 0
    assert report["latency_ms"] > 0


def test_cli_ping_reports_the_servers_own_version_string(
    cli: Any, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``db ping`` gives the server's ``server_version`` as the server spells it (a 15.20
    server was reported as "15.0"), from the connection's handshake: no query asks for it."""
    import asyncpg

    async def show_server_version() -> str:
        conn = await asyncpg.connect(
            make_url(postgres_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    expected = asyncio.run(show_server_version())
    sent: list[str] = []
    for method in ("execute", "fetch", "fetchrow", "fetchval"):
        original = getattr(asyncpg.Connection, method)

        def recording(
            self: Any, query: str, *args: Any, _original: Any = original, **kw: Any
        ) -> Any:
            sent.append(query)
            return _original(self, query, *args, **kw)

        monkeypatch.setattr(asyncpg.Connection, method, recording)
    monkeypatch.setenv("REVOCTL_DATABASE__URL", postgres_url)
    ping = as_json(cli("db", "ping", "-o", "json"))
    assert ping["backend"] == "postgresql"
    assert ping["server_version"] == expected
    assert sent and not any("version()" in q or "server_version" in q for q in sent), sent


def test_cli_migrate_current_history_downgrade(
    cli: Any, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVOCTL_DATABASE__URL", postgres_url)
    head = heads()[0]
    assert as_json(cli("db", "migrate", "-o", "json"))["to"] == head
    assert as_json(cli("db", "current", "-o", "json")) == {
        "current": head,
        "head": head,
        "pending": 0,
    }
    assert all(entry["applied"] for entry in as_json(cli("db", "history", "-o", "json")))
    assert as_json(cli("db", "downgrade", "0001", "-o", "json"))["to"] == "0001"
    assert as_json(cli("db", "current", "-o", "json"))["current"] == "0001"
    assert cli("db", "downgrade", "nope").exit_code == 3


def test_cli_ping_health_pool_keys(
    cli: Any, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVOCTL_DATABASE__URL", postgres_url)
    ping = as_json(cli("db", "ping", "-o", "json"))
    assert {"ok", "backend", "latency_ms", "server_version"} <= set(ping)
    assert ping["backend"] == "postgresql"
    health = as_json(cli("db", "health", "-o", "json"))
    assert {"status", "latency_ms", "pool", "migrations"} <= set(health)
    assert set(health["migrations"]) == {"current", "head", "pending"}
    pool = as_json(cli("db", "pool", "-o", "json"))
    assert set(pool["configured"]) == {"pool_size", "max_overflow", "pool_timeout", "pool_recycle"}
    assert pool["server_view"] is True
    own = [row for row in pool["connections"] if row["application_name"].endswith(":cli")]
    assert own and own[0]["revoctl"] is True and own[0]["state"] == "active"


HOLDER = textwrap.dedent(
    """
    import asyncio, contextlib, sys
    from revoctl.core import DatabaseConfig
    from revoctl.core.db import DatabaseManager

    async def main() -> None:
        async with DatabaseManager(DatabaseConfig(url=sys.argv[1]), role="runtime") as db:
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(3):
                    await stack.enter_async_context(db.connection())
                print("ready", flush=True)
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    asyncio.run(main())
    """
)


def test_db_pool_from_another_process_sees_the_runtime_pool(postgres_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, postgres_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        result = run_revoctl(
            ["db", "pool", "-o", "json"], env={"REVOCTL_DATABASE__URL": postgres_url}
        )
    finally:
        holder.communicate("\n", timeout=10)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["connections"]
    runtime = [
        row
        for row in rows
        if row["application_name"].startswith("revoctl")
        and row["application_name"].endswith(f":{holder.pid}:runtime")
    ]
    assert sum(row["count"] for row in runtime) >= 3
    assert all(row["revoctl"] for row in runtime)
    assert all(row["oldest_backend_start"] for row in runtime)


async def test_reads_on_the_raw_driver_match_the_pool(postgres_url: str) -> None:
    """`DatabaseManager.read` before the pool is built (asyncpg, no SQLAlchemy) and after
    (the pool) return the same rows; a missing table is the driver's error, not an outage."""
    config = DatabaseConfig(url=postgres_url)
    async with DatabaseManager(config, role="migrate") as migrator:
        await upgrade(migrator)
    queries = ("SELECT 1 AS one, 'x' AS letter", "SELECT version_num FROM alembic_version")
    db = DatabaseManager(config, role="reader")
    try:
        raw = await db.read(*queries)
        assert db.pool_stats() is None  # nothing built a pool
        await db.initialize()
        pooled = await db.read(*queries)
        assert db.pool_stats()["checkouts"] == 1  # type: ignore[index]
        for read in (db.read, DatabaseManager(config).read):
            with pytest.raises(Exception) as caught:
                await read("SELECT * FROM no_such_table")
            assert is_missing_table(caught.value)
    finally:
        await db.close()
    assert raw == pooled == [[{"one": 1, "letter": "x"}], [{"version_num": heads()[0]}]]


async def test_a_raw_read_of_an_unreachable_server_is_backend_unavailable() -> None:
    config = DatabaseConfig(url="postgresql+asyncpg://u:SECRETPW@127.0.0.1:1/x", retry_attempts=1)
    with pytest.raises(BackendUnavailableError) as caught:
        await DatabaseManager(config).read("SELECT 1")
    assert "after 2 attempts" in str(caught.value) and "SECRETPW" not in str(caught.value)


async def test_dropped_connections_are_retried_until_the_session_succeeds(
    postgres_url: str,
) -> None:
    url = make_url(postgres_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432, drop_first=2) as proxy:
        config = DatabaseConfig(url=proxy.url_for(postgres_url), retry_attempts=3)
        async with DatabaseManager(config) as db:
            db.retry_policy = FAST_RETRIES
            async with db.get_async_session() as session:
                assert (await session.execute(text("SELECT 41 + 1"))).scalar() == 42
    assert proxy.accepted == 3


async def test_more_drops_than_retries_is_backend_unavailable(postgres_url: str) -> None:
    url = make_url(postgres_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432, drop_first=99) as proxy:
        config = DatabaseConfig(url=proxy.url_for(postgres_url), retry_attempts=2)
        async with DatabaseManager(config) as db:
            db.retry_policy = RetryPolicy(retries=2, base_delay=0.02, max_delay=0.1)
            with pytest.raises(BackendUnavailableError, match="after 3 attempts"):
                async with db.get_async_session():
                    pass
    assert proxy.accepted == 3


async def test_a_connection_lost_mid_session_is_backend_unavailable(
    db: DatabaseManager, postgres_url: str
) -> None:
    async with DatabaseManager(DatabaseConfig(url=postgres_url), role="killer") as killer:
        with pytest.raises(BackendUnavailableError, match="cannot reach") as caught:
            async with db.get_async_session() as session:
                pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                async with killer.connection() as conn:
                    await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                await session.execute(text("SELECT 1"))
    assert "after" not in str(caught.value)  # the block is not retried
    assert db.pool_stats()["invalidations"] >= 1
    assert (await db.ping())["ok"] is True  # the pool replaced the dead connection


async def test_a_refused_login_is_not_retried(postgres_url: str) -> None:
    url = make_url(postgres_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        wrong = make_url(proxy.url_for(postgres_url)).set(username="nobody", password="SECRETPW")
        config = DatabaseConfig(url=wrong.render_as_string(hide_password=False))
        async with DatabaseManager(config) as db:
            db.retry_policy = FAST_RETRIES
            with pytest.raises(BackendUnavailableError, match="refused the connection") as caught:
                await db.ping()
    assert proxy.accepted == 1
    assert "SECRETPW" not in str(caught.value) and "nobody" in str(caught.value)


async def test_transaction_survives_a_real_serialization_failure(
    db: DatabaseManager,
) -> None:
    db.retry_policy = FAST_RETRIES
    async with db.connection() as conn:
        await conn.execute(text("CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL)"))
        await conn.execute(text("INSERT INTO counters VALUES (1, 0)"))
        await conn.commit()
    both_read = asyncio.Barrier(2)
    calls = 0

    async def increment(session: Any) -> int:
        nonlocal calls
        calls += 1
        first_round = calls <= 2
        await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        n = (await session.execute(text("SELECT n FROM counters WHERE id = 1"))).scalar_one()
        if first_round:
            await both_read.wait()  # both read 0 before either writes: one must lose
        await session.execute(text("UPDATE counters SET n = :n WHERE id = 1"), {"n": n + 1})
        return int(n)

    seen = await asyncio.gather(db.transaction(increment), db.transaction(increment))
    async with db.connection() as conn:
        final = (await conn.execute(text("SELECT n FROM counters WHERE id = 1"))).scalar_one()
    assert final == 2  # no lost update
    assert sorted(seen) == [0, 1] and calls == 3


async def test_slow_query_with_pg_sleep_is_logged_without_parameters(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="revoctl.db")
    config = DatabaseConfig(url=postgres_url, slow_query_ms=100)
    async with DatabaseManager(config) as db:
        async with db.get_async_session() as session:
            await session.execute(text("SELECT 1, CAST(:token AS text)"), {"token": "fast"})
            await session.execute(
                text("SELECT pg_sleep(0.2), CAST(:token AS text)"), {"token": "PG-SECRET-VALUE"}
            )
        assert db.pool_stats()["slow_queries"] == 1
    slow = [r for r in caplog.records if "slow query" in r.getMessage()]
    assert len(slow) == 1 and "pg_sleep(0.2)" in slow[0].getMessage()
    assert "PG-SECRET-VALUE" not in caplog.text


def test_concurrent_migrations_from_several_processes_apply_once(postgres_url: str) -> None:
    """Replicas that all run `db migrate` at start-up: every one succeeds, each revision
    is applied once."""
    env = {"REVOCTL_DATABASE__URL": postgres_url, "REVOCTL_OUTPUT": "json"}
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "revoctl", "db", "migrate"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        for _ in range(4)
    ]
    outcomes = [(child.wait(timeout=120), *child.communicate()) for child in children]
    assert [code for code, _, _ in outcomes] == [0] * 4, [err for _, _, err in outcomes]
    applied = [json.loads(out)["applied"] for _, out, _ in outcomes]
    assert sorted(applied, key=len)[:3] == [[], [], []]  # one process applied them all
    current = json.loads(run_revoctl(["db", "current", "-o", "json"], env=env).stdout)
    assert current["pending"] == 0
