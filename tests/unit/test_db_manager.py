"""`DatabaseManager` on the embedded SQLite database: sessions, models, pool, retries, health."""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import func, select, text

from revoctl.core import RetryPolicy
from revoctl.core._process import APPLICATION_NAME_MAX_BYTES, application_name
from revoctl.core.db import DatabaseConfig, DatabaseManager, heads, upgrade
from revoctl.core.db.models import ModelUsage, RateLimitLog, RequestLog, SystemMetrics
from revoctl.core.errors import BackendUnavailableError, ConfigError


def config(**overrides: Any) -> DatabaseConfig:
    """The embedded default (a SQLite file in this test's REVOCTL_HOME) with ``overrides``."""
    return DatabaseConfig(**overrides)


@pytest.fixture
async def db() -> AsyncIterator[DatabaseManager]:
    async with DatabaseManager(config(), role="test") as manager:
        await upgrade(manager)  # the models describe the newest schema (0003 added columns)
        yield manager


class Sleeps:
    """A stand-in for `asyncio.sleep` that records the delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def failing_connects(monkeypatch: pytest.MonkeyPatch, failures: int, error: Exception) -> list[int]:
    """Make the first ``failures`` SQLite connects raise ``error``; returns the attempt log."""
    real_connect = aiosqlite.connect
    attempts: list[int] = []

    def connect(*args: Any, **kwargs: Any) -> Any:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= failures:
            raise error
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(aiosqlite, "connect", connect)
    return attempts


# --- lifecycle and configuration -------------------------------------------------------


async def test_default_database_is_a_sqlite_file_in_revoctl_home(revoctl_home: Path) -> None:
    async with DatabaseManager(config()) as manager:
        result = await manager.ping()
        async with manager.connection() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    assert (revoctl_home / "revoctl.db").is_file()
    assert result["ok"] is True and result["backend"] == "sqlite"
    assert result["server_version"] == sqlite3.sqlite_version
    assert mode == "wal"
    assert busy == 5000  # connect_timeout (5 s) bounds the wait for a lock


async def test_secret_reference_without_resolver_is_a_config_error() -> None:
    manager = DatabaseManager(config(url="postgresql+asyncpg://app:${secret:db-pw}@h/app"))
    with pytest.raises(ConfigError, match=r"database\.url"):
        await manager.initialize()


async def test_resolver_expands_the_url_when_the_engine_is_built(tmp_path: Path) -> None:
    seen: list[str] = []

    async def resolve(name: str) -> str:
        seen.append(name)
        return str(tmp_path / "resolved.db")

    async with DatabaseManager(
        config(url="sqlite+aiosqlite:///${secret:db-file}"), resolve=resolve
    ) as manager:
        await manager.ping()
    assert seen == ["db-file"]  # each reference, resolved apart from the URL
    assert (tmp_path / "resolved.db").is_file()


def test_application_name_is_tagged_and_cut_to_63_bytes() -> None:
    assert application_name("runtime").startswith("revoctl:")
    assert application_name("runtime").endswith(":runtime")
    long = application_name("é" * 80)
    assert len(long.encode()) <= APPLICATION_NAME_MAX_BYTES
    long.encode().decode()  # never cut in the middle of a character


async def test_manager_must_be_initialized_and_cannot_reopen() -> None:
    manager = DatabaseManager(config())
    with pytest.raises(RuntimeError, match="initialize"):
        manager.engine  # noqa: B018
    assert manager.pool_stats() is None  # no pool yet: nothing to report, not zeros
    await manager.initialize()
    await manager.close()
    with pytest.raises(RuntimeError, match="closed"):
        await manager.initialize()


async def test_concurrent_first_calls_build_one_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three first requests at once: one engine is built, and the one built is the one closed."""
    from revoctl.core.db import _engine

    built: list[Any] = []
    real_build = _engine.build_engine

    def counting_build(*args: Any, **kwargs: Any) -> Any:
        built.append(real_build(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(_engine, "build_engine", counting_build)
    calls = 0

    async def slow_read(name: str) -> str:  # the await inside initialize() that let them race
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "revoctl-race.db"

    manager = DatabaseManager(config(url="sqlite+aiosqlite:///${secret:file}"), resolve=slow_read)
    await asyncio.gather(*(manager.initialize() for _ in range(3)))
    async with manager.get_async_session() as session:
        assert (await session.execute(select(func.count()))).scalar() == 1
    assert len(built) == 1 and calls == 1
    assert manager.engine is built[0]  # the engine close() disposes is the only one built
    await manager.close()


# --- sessions and models ---------------------------------------------------------------


async def test_session_commits_on_success_and_rolls_back_on_error(db: DatabaseManager) -> None:
    async with db.get_async_session() as session:
        session.add(RequestLog(method="GET", path="/ok", status_code=200, duration_ms=1.5))
    with pytest.raises(ValueError, match="boom"):
        async with db.get_async_session() as session:
            session.add(RequestLog(method="GET", path="/lost", status_code=500, duration_ms=2))
            await session.flush()
            raise ValueError("boom")
    async with db.get_async_session() as session:
        paths = (await session.scalars(select(RequestLog.path))).all()
    assert paths == ["/ok"]


async def test_the_callers_own_os_errors_are_not_an_outage(db: DatabaseManager) -> None:
    with pytest.raises(FileNotFoundError):
        async with db.get_async_session():
            raise FileNotFoundError("/no/such/file")


async def test_models_round_trip_with_utc_timestamps(db: DatabaseManager) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 1, 2, 14, 0, tzinfo=plus_two)
    async with db.get_async_session() as session:
        session.add_all(
            [
                RequestLog(
                    ts=local,
                    method="POST",
                    path="/v1/chat",
                    status_code=201,
                    duration_ms=12.5,
                    user_id="alice",
                    api_key_id="key-1",
                    client_ip="::1",
                    request_id="req-1",
                ),
                ModelUsage(
                    provider="openai",
                    model="gpt-4o",
                    prompt_tokens=10,
                    completion_tokens=5,
                    total_tokens=15,
                    estimated_cost=Decimal("0.000123"),
                    request_id="req-1",
                ),
                RateLimitLog(rule="api_generation", key="alice", allowed=False, remaining=0),
                SystemMetrics(name="cpu", value=0.5, labels={"host": "a", "core": 1}),
            ]
        )
    async with db.get_async_session() as session:
        request = (await session.scalars(select(RequestLog))).one()
        usage = (await session.scalars(select(ModelUsage))).one()
        decision = (await session.scalars(select(RateLimitLog))).one()
        metric = (await session.scalars(select(SystemMetrics))).one()
    assert request.ts == local and request.ts.tzinfo == UTC
    assert request.ts.hour == 12
    assert (request.user_id, request.client_ip, request.request_id) == ("alice", "::1", "req-1")
    assert usage.estimated_cost == Decimal("0.000123") and usage.ts.tzinfo == UTC
    assert (decision.allowed, decision.remaining, decision.weight) == (False, 0, 1)
    assert metric.labels == {"host": "a", "core": 1}
    assert abs(metric.ts - datetime.now(UTC)) < timedelta(minutes=1)


@pytest.mark.parametrize("code", ["40001", "40P01"])
async def test_transaction_reruns_the_whole_transaction_on_serialization_failure(
    db: DatabaseManager, code: str
) -> None:
    class SerializationFailure(Exception):
        sqlstate = code

    sleeps = Sleeps()
    db.retry_policy = replace(db.retry_policy, sleep=sleeps)
    calls = 0

    async def record(session: Any) -> str:
        nonlocal calls
        calls += 1
        session.add(RateLimitLog(rule="r", key=f"attempt-{calls}", allowed=True, remaining=1))
        await session.flush()
        if calls < 3:
            raise SerializationFailure("could not serialize access")
        return "done"

    assert await db.transaction(record) == "done"
    async with db.get_async_session() as session:
        keys = (await session.scalars(select(RateLimitLog.key))).all()
    assert calls == 3
    assert keys == ["attempt-3"]  # the failed attempts were rolled back
    assert len(sleeps.delays) == 2


async def test_transaction_does_not_rerun_other_errors(db: DatabaseManager) -> None:
    calls = 0

    async def fail(session: Any) -> None:
        nonlocal calls
        calls += 1
        raise LookupError("not a transient error")

    with pytest.raises(LookupError):
        await db.transaction(fail)
    assert calls == 1


# --- pool statistics and slow queries --------------------------------------------------


async def test_pool_stats_count_checkouts_overflow_and_timeouts() -> None:
    cfg = config(pool_size=1, max_overflow=1, pool_timeout=0.2)
    async with DatabaseManager(cfg) as manager:
        async with manager.connection(), manager.connection():
            busy = manager.pool_stats()
            assert busy["checked_out"] == manager.engine.sync_engine.pool.checkedout()
            started = time.perf_counter()
            with pytest.raises(BackendUnavailableError, match="pool is exhausted"):
                async with manager.connection():
                    pass
            waited = time.perf_counter() - started
        idle = manager.pool_stats()
    assert busy["checked_out"] == 2 and busy["overflow"] == 1 and busy["saturated"] is True
    assert 0.2 <= waited < 1.5  # a pool timeout is not retried
    assert idle["checkout_timeouts"] == 1
    assert idle["checkout_wait_max_ms"] >= 200
    assert idle["checked_out"] == 0 and idle["saturated"] is False
    assert idle["checkouts"] == idle["checkins"] == 2
    assert idle["connects"] == 2
    assert idle["checked_in"] == 1  # the overflow connection was closed on return


@pytest.mark.slow
async def test_health_with_a_saturated_pool_answers_within_health_timeout() -> None:
    cfg = config(pool_size=1, max_overflow=0, pool_timeout=30, health_timeout=1)
    async with DatabaseManager(cfg) as manager:
        await upgrade(manager)
        async with manager.connection():
            started = time.perf_counter()
            report = await manager.health_check()
            elapsed = time.perf_counter() - started
    assert elapsed < cfg.health_timeout * 1.5
    assert report["status"] == "degraded"
    assert report["pool"]["saturated"] is True
    assert report["migrations"]["pending"] == 0


SLOW_SQL = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) "
    "SELECT count(*), :token FROM n"
)


async def test_slow_query_is_logged_without_its_parameters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="revoctl.db")
    async with DatabaseManager(config(slow_query_ms=5)) as manager:
        async with manager.connection() as conn:
            await conn.execute(text(SLOW_SQL), {"token": "tok-SUPERSECRET-123"})
        slow = manager.pool_stats()["slow_queries"]
    records = [r for r in caplog.records if "slow query" in r.getMessage()]
    assert slow == 1 and len(records) == 1
    message = records[0].getMessage()
    assert "WITH RECURSIVE n(i)" in message and "[parameters redacted]" in message
    assert records[0].duration_ms >= 5  # type: ignore[attr-defined]
    assert "SUPERSECRET" not in caplog.text
    assert "SUPERSECRET" not in repr(records[0].__dict__)


async def test_fast_queries_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="revoctl.db")
    async with DatabaseManager(config(slow_query_ms=10_000)) as manager:
        await manager.ping()
        assert manager.pool_stats()["slow_queries"] == 0
    assert not [r for r in caplog.records if "slow query" in r.getMessage()]


# --- retries ---------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_inside_bounds() -> None:
    policy = RetryPolicy(retries=6, base_delay=0.1, max_delay=1.0)
    for retry, cap in enumerate([0.1, 0.2, 0.4, 0.8, 1.0, 1.0], start=1):
        assert replace(policy, random=lambda: 0.0).delay(retry) == pytest.approx(cap / 2)
        assert replace(policy, random=lambda: 1.0).delay(retry) == pytest.approx(cap)
        samples = [policy.delay(retry) for _ in range(200)]
        assert all(cap / 2 <= s <= cap for s in samples)
        assert len(set(samples)) > 1  # jittered, not fixed
    assert policy.max_total_delay() == pytest.approx(0.1 + 0.2 + 0.4 + 0.8 + 1.0 + 1.0)


async def test_connection_failures_are_retried_with_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts = failing_connects(monkeypatch, 2, ConnectionRefusedError(111, "refused"))
    sleeps = Sleeps()
    async with DatabaseManager(config(retry_attempts=3)) as manager:
        manager.retry_policy = replace(manager.retry_policy, sleep=sleeps)
        async with manager.get_async_session() as session:
            assert (await session.execute(select(func.count()))).scalar() == 1
    assert attempts == [1, 2, 3]
    policy = manager.retry_policy
    assert len(sleeps.delays) == 2
    for retry, delay in enumerate(sleeps.delays, start=1):
        cap = min(policy.max_delay, policy.base_delay * 2 ** (retry - 1))
        assert cap / 2 <= delay <= cap


async def test_connection_failures_past_the_retries_raise_backend_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts = failing_connects(monkeypatch, 99, ConnectionRefusedError(111, "refused"))
    sleeps = Sleeps()
    async with DatabaseManager(config(retry_attempts=2)) as manager:
        manager.retry_policy = replace(manager.retry_policy, sleep=sleeps)
        with pytest.raises(BackendUnavailableError, match="after 3 attempts") as caught:
            async with manager.connection():
                pass
    assert len(attempts) == 3 and len(sleeps.delays) == 2
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


async def test_errors_that_are_not_transient_are_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts = failing_connects(monkeypatch, 99, ValueError("bad argument"))
    async with DatabaseManager(config(retry_attempts=3)) as manager:
        with pytest.raises(ValueError, match="bad argument"):
            async with manager.connection():
                pass
    assert attempts == [1]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a hung server)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.mark.slow
async def test_a_server_that_never_answers_fails_within_the_bound(silent_server: int) -> None:
    cfg = config(
        url=f"postgresql+asyncpg://app:SECRETPW@127.0.0.1:{silent_server}/appdb",
        connect_timeout=0.3,
        retry_attempts=2,
        health_timeout=0.5,
    )
    async with DatabaseManager(cfg) as manager:
        started = time.perf_counter()
        with pytest.raises(BackendUnavailableError) as caught:
            await manager.ping()
        elapsed = time.perf_counter() - started
        health_started = time.perf_counter()
        report = await manager.health_check()
        health_elapsed = time.perf_counter() - health_started
        bound = cfg.connect_timeout * 3 + manager.retry_policy.max_total_delay()
        pooled_started = time.perf_counter()
        with pytest.raises(BackendUnavailableError, match="after 3 attempts") as pooled:
            async with manager.connection():
                pass
        pooled_elapsed = time.perf_counter() - pooled_started
    # One deadline for the probe, connect_timeout, whatever the retries would add.
    assert elapsed < cfg.connect_timeout + 1.0
    message = str(caught.value)
    assert f"127.0.0.1:{silent_server}/appdb" in message
    assert f"did not answer within {cfg.connect_timeout:g}s" in message
    assert "SECRETPW" not in message
    assert f"127.0.0.1:{silent_server}/appdb" in str(pooled.value)
    assert "SECRETPW" not in str(pooled.value)
    assert pooled_elapsed < bound + 1.0  # the pool's path: each attempt bounded, retried
    assert report["status"] == "unhealthy" and health_elapsed < 1.0
    assert "SECRETPW" not in str(report)


async def test_concurrent_sessions_share_the_sqlite_file(db: DatabaseManager) -> None:
    async def write(i: int) -> None:
        async with db.get_async_session() as session:
            session.add(SystemMetrics(name="n", value=float(i), labels={}))

    await asyncio.gather(*(write(i) for i in range(20)))
    async with db.get_async_session() as session:
        assert (await session.execute(select(func.count(SystemMetrics.id)))).scalar() == 20


async def test_reads_before_the_pool_is_built_use_sqlite3_and_match_the_pool() -> None:
    async with DatabaseManager(config(), role="migrate") as migrator:
        await upgrade(migrator)
    query = "SELECT version_num FROM alembic_version"
    db = DatabaseManager(config())
    try:
        raw = await db.read(query)
        assert db.pool_stats() is None
        await db.initialize()
        assert await db.read(query) == raw == [[{"version_num": heads()[0]}]]
        assert db.pool_stats()["checkouts"] == 1  # type: ignore[index]
    finally:
        await db.close()
    memory = DatabaseManager(config(url="sqlite+aiosqlite:///:memory:"))
    try:
        assert await memory.read("SELECT 2 AS two") == [[{"two": 2}]]
        assert memory.pool_stats() is not None  # an in-memory database lives in its pool only
    finally:
        await memory.close()


# --- one translation for the raw driver and SQLAlchemy ---------------------------------


class _LoginRefused(Exception):
    sqlstate = "28P01"  # invalid_password, as asyncpg raises it


@pytest.mark.parametrize(
    "raw",
    [
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)"),
        sqlite3.DatabaseError("file is not a database"),
        _LoginRefused('password authentication failed for user "u"'),
    ],
    ids=["refused", "not-a-database", "login"],
)
def test_a_driver_error_reads_the_same_raw_and_wrapped_by_sqlalchemy(raw: Exception) -> None:
    """The probes see the driver's own error, the pool SQLAlchemy's wrapping of it: one
    table translates both, word for word."""
    from sqlalchemy.exc import OperationalError

    from revoctl.core.db._errors import translated

    wrapped = OperationalError("SELECT 1", {}, raw)
    seen = [translated(error, "db.example/app", attempts=2) for error in (raw, wrapped)]
    assert all(isinstance(error, BackendUnavailableError) for error in seen)
    assert str(seen[0]) == str(seen[1])
    assert "db.example/app" in str(seen[0])


def test_a_missing_table_is_left_to_the_caller_and_named_when_not_migrated() -> None:
    from revoctl.core.db._errors import missing_table, not_migrated, translated

    raw = sqlite3.OperationalError("no such table: rate_limit_state")
    assert translated(raw, "db", attempts=1) is None
    assert str(not_migrated(missing_table(raw))) == (
        "the rate_limit_state table is missing: the database is not migrated "
        "(run 'revoctl db migrate')"
    )
