"""The guard protocol (`revoctl.core._guard`) and its breaker (`BreakerGuard`): what is
counted, what is refused, what is never judged; the database layer under it on the real
PostgreSQL (a server that answers, and a port where none listens)."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from sqlalchemy import text

from revoctl.core._guard import NO_GUARD, GuardOpenError, effective, unguarded
from revoctl.core.breakers import CircuitBreaker
from revoctl.core.breakers._guard import BreakerGuard, server_failure
from revoctl.core.breakers.settings import CircuitBreakerConfig
from revoctl.core.db import DatabaseConfig, DatabaseManager
from revoctl.core.errors import BackendUnavailableError, PoolExhaustedError


def breaker(**overrides: Any) -> CircuitBreaker:
    values: dict[str, Any] = {
        "name": "database",
        "failure_threshold": 2,
        "failure_rate_threshold": 0,
        "recovery_timeout": 60,
        "slow_call_seconds": 0.2,
        "slow_call_is_failure": True,
    }
    return CircuitBreaker(CircuitBreakerConfig(**(values | overrides)))


async def fail_with(guard: BreakerGuard, exc: Exception) -> None:
    with pytest.raises(type(exc)):
        async with guard.guarded():
            raise exc


async def test_no_guard_runs_every_call_and_reports_nothing() -> None:
    ran = []
    for _ in range(3):
        async with NO_GUARD.guarded() as call:
            call.restart()
            ran.append(1)
    assert ran == [1, 1, 1] and NO_GUARD.report() is None


async def test_server_failures_open_the_breaker_and_later_calls_are_refused_unrun() -> None:
    cb = breaker()
    guard = BreakerGuard(lambda: cb)
    await fail_with(guard, BackendUnavailableError("database unreachable"))
    assert cb.state.name == "closed"
    await fail_with(guard, TimeoutError())
    assert cb.state.name == "open"
    ran = []
    with pytest.raises(GuardOpenError) as refused:
        async with guard.guarded():
            ran.append(1)
    assert ran == [] and isinstance(refused.value, BackendUnavailableError)
    assert refused.value.retry_after is not None and refused.value.retry_after > 0
    report = guard.report()
    assert report is not None and report["breaker"] == "database" and report["state"] == "open"
    assert 0 < report["retry_after"] <= 60


async def test_back_pressure_and_the_callers_own_errors_are_not_counted() -> None:
    cb = breaker()
    guard = BreakerGuard(lambda: cb)
    for _ in range(5):
        await fail_with(guard, PoolExhaustedError("pool exhausted"))
        await fail_with(guard, ValueError("a constraint of the caller's"))
    assert cb.state.name == "closed"
    assert cb.stats()["failures"] == 0
    assert not server_failure(PoolExhaustedError("x")) and server_failure(ConnectionRefusedError())


@pytest.mark.slow
async def test_the_wait_before_restart_is_not_timed() -> None:
    cb = breaker()  # slow at 0.2 s, and slow is a failure
    guard = BreakerGuard(lambda: cb)
    for _ in range(3):
        async with guard.guarded() as call:
            await asyncio.sleep(0.3)  # waiting for a pooled connection
            call.restart()
    assert cb.state.name == "closed" and cb.stats()["slow_calls"] == 0
    for _ in range(2):
        async with guard.guarded() as call:
            call.restart()
            await asyncio.sleep(0.3)  # the server's own work
    assert cb.state.name == "open"


async def test_unguarded_calls_are_never_judged() -> None:
    cb = breaker()
    guard = BreakerGuard(lambda: cb)
    await fail_with(guard, OSError("down"))
    await fail_with(guard, OSError("down"))
    assert cb.state.name == "open"
    with unguarded():
        async with effective(guard).guarded():
            pass
    with pytest.raises(GuardOpenError):
        async with effective(guard).guarded():
            pass


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_database_outage_fails_fast_once_the_breaker_opens() -> None:
    config = DatabaseConfig(
        url=f"postgresql+asyncpg://root@127.0.0.1:{dead_port()}/none",
        retry_attempts=2,
        connect_timeout=2,
    )
    async with DatabaseManager(config) as db:
        cb = breaker()
        db.guard = BreakerGuard(lambda: cb)
        for _ in range(2):
            with pytest.raises(BackendUnavailableError):
                await db.transaction(lambda s: s.execute(text("SELECT 1")))
        assert cb.state.name == "open"
        acquire = db._acquire
        acquired: list[float | None] = []

        async def counted(pool_wait: float | None = None) -> Any:
            acquired.append(pool_wait)
            return await acquire(pool_wait)

        db._acquire = counted  # type: ignore[method-assign]
        with pytest.raises(GuardOpenError, match="database unavailable"):
            await db.transaction(lambda s: s.execute(text("SELECT 1")))
        assert acquired == []  # refused before the pool was asked: no connect, no backoff


async def test_a_refusing_guard_stops_the_pool_and_shows_in_health(postgres_url: str) -> None:
    async with DatabaseManager(DatabaseConfig(url=postgres_url)) as db:
        cb = breaker(failure_threshold=1)
        db.guard = BreakerGuard(lambda: cb)
        assert (await db.read("SELECT 1 AS one")) == [[{"one": 1}]]
        healthy = await db.health_check()
        assert "guard" not in healthy
        with pytest.raises(BackendUnavailableError):  # the server's failure: opens it
            async with db.connection():
                raise BackendUnavailableError("connection reset")
        assert cb.state.name == "open"
        with pytest.raises(GuardOpenError):
            await db.read("SELECT 1 AS one")
        report = await db.health_check()
        assert report["status"] == "degraded" and report["guard"]["state"] == "open"
        assert "circuit breaker 'database' is open" in report["reason"]
        with unguarded():  # the breakers' own store traffic still goes through
            assert (await db.read("SELECT 1 AS one")) == [[{"one": 1}]]


async def test_no_password_reaches_the_health_report_or_the_refusal() -> None:
    canary = "pw-canary-guard-5f1e"
    config = DatabaseConfig(
        url=f"postgresql+asyncpg://root:{canary}@127.0.0.1:{dead_port()}/none",
        retry_attempts=0,
        connect_timeout=2,
    )
    async with DatabaseManager(config) as db:
        cb = breaker(failure_threshold=1)
        db.guard = BreakerGuard(lambda: cb)
        with pytest.raises(BackendUnavailableError) as failed:
            await db.read("SELECT 1")
        with pytest.raises(GuardOpenError) as refused:
            await db.read("SELECT 1")
        report = await db.health_check()
    assert report["status"] == "unhealthy" and report["guard"]["state"] == "open"
    for text_ in (json.dumps(report), str(refused.value), str(failed.value)):
        assert canary not in text_
