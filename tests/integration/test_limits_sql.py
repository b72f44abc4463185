"""`SqlLimitStore` on PostgreSQL and SQLite, the migration of its table, and the event log
(``rate_limit_logs``) written in batches by the runtime's limiter."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text

from revoctl.core import load_services
from revoctl.core.db import DatabaseConfig, DatabaseManager, upgrade
from revoctl.core.db.models import Base
from revoctl.core.limits import LimitsConfig, RateLimiter, RateLimitRule, SqlLimitStore
from revoctl.core.limits.stores import sql as sql_store

RULES = """
[[limits.rules]]
name = "api_generation"
requests = 10
window_seconds = 60
burst_multiplier = 2.0
"""


def write_config(tmp_path: Path, limits: str, database_url: str | None = None) -> Path:
    path = tmp_path / "revoctl.toml"
    database = f'[database]\nurl = "{database_url}"\n' if database_url else ""
    path.write_text(f"[limits]\n{limits}\n{database}{RULES}")
    return path


@pytest.mark.postgres
def test_limits_test_and_inspect_on_postgresql(cli, tmp_path: Path, postgres_url: str) -> None:
    config = str(write_config(tmp_path, 'store = "sql"', postgres_url))
    assert cli("--config", config, "db", "migrate").exit_code == 0
    args = ("--config", config, "limits")
    result = cli(*args, "test", "api_generation", "--key", "a", "--count", "25", "-o", "json")
    assert result.exit_code == 1, result.stderr
    document = json.loads(result.stdout)
    assert (document["allowed"], document["denied"]) == (20, 5)
    assert 5.0 < document["last"]["retry_after"] <= 6.0
    seen = [json.loads(cli(*args, "inspect", "api_generation", "--key", "a", "-o", "json").stdout)]
    seen.append(
        json.loads(cli(*args, "inspect", "api_generation", "--key", "a", "-o", "json").stdout)
    )
    assert [s["remaining"] for s in seen] == [0, 0]
    assert seen[0]["reset_after"] > 110


@pytest.mark.postgres
async def test_denials_and_store_failures_reach_rate_limit_logs(
    tmp_path: Path, postgres_url: str
) -> None:
    """The runtime's limiter on an unreachable Redis (failure_mode open), logging to PostgreSQL."""
    config = write_config(tmp_path, 'store = "sql"', postgres_url)
    async with load_services(config) as svc:
        await upgrade(svc.db)
        for _ in range(22):
            await svc.limiter.check_rate_limit("api_generation", "dora")
    broken = write_config(tmp_path, 'store = "redis"', postgres_url)
    text_ = broken.read_text().replace(
        "[database]", '[redis]\nurl = "redis://127.0.0.1:1/0"\n[database]'
    )
    broken.write_text(text_)
    async with load_services(broken) as svc:
        result = await svc.limiter.check_rate_limit("api_generation", "erin")
        assert result.allowed and "store unavailable" in (result.reason or "")
    async with DatabaseManager(DatabaseConfig(url=postgres_url)) as db, db.connection() as conn:
        rows = (
            await conn.execute(
                text("SELECT key, allowed, event, reason FROM rate_limit_logs ORDER BY id")
            )
        ).all()
    assert [(r.key, r.allowed, r.event) for r in rows] == [("dora", False, "denied")] * 2 + [
        ("erin", True, "store_failure")
    ]
    assert "cannot reach Redis" in rows[-1].reason


def drift(connection: Connection) -> list[object]:
    diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    return [d for d in diffs if "rate_limit" in repr(d)]


@pytest.mark.postgres
async def test_migration_0003_matches_the_models_on_postgresql(postgres_url: str) -> None:
    async with DatabaseManager(DatabaseConfig(url=postgres_url)) as db:
        await upgrade(db)
        async with db.connection() as conn:
            assert await conn.run_sync(drift) == []


async def test_migration_0003_matches_the_models_on_sqlite() -> None:
    async with DatabaseManager(DatabaseConfig()) as db:
        await upgrade(db)
        async with db.connection() as conn:
            assert await conn.run_sync(drift) == []


async def test_expired_rows_are_swept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_store, "SWEEP_EVERY", 5)
    # 2 s: the four decisions and the first inspect fit in the window on a busy machine
    window = 2.0
    rule = RateLimitRule(name="short", requests=3, window_seconds=window, algorithm="fixed_window")
    async with DatabaseManager(DatabaseConfig()) as db:
        await upgrade(db)
        limiter = RateLimiter(LimitsConfig(rules=(rule,)), store=SqlLimitStore(db))
        for i in range(4):
            await limiter.check_rate_limit("short", f"k{i}")
        assert len(await limiter.inspect("short")) == 4
        async with asyncio.timeout(window * 5):  # wait for the window to run out
            while await limiter.inspect("short"):
                await asyncio.sleep(0.05)
        await limiter.check_rate_limit("short", "fresh")  # the 5th decision sweeps
        async with db.connection() as conn:
            keys = (await conn.execute(text("SELECT key FROM rate_limit_state"))).scalars().all()
        assert keys == ["fresh"]
        await limiter.close()


@pytest.mark.postgres
async def test_an_unmigrated_database_is_a_clear_error_and_a_degraded_limiter(
    postgres_url: str,
) -> None:
    """PostgreSQL is migrated by an explicit deploy step: until then the limiter says so,
    and failure_mode answers."""
    async with DatabaseManager(DatabaseConfig(url=postgres_url)) as db:
        limiter = RateLimiter(LimitsConfig(rules=()), store=SqlLimitStore(db))
        report = await limiter.health_check()
        assert report["status"] == "degraded"
        assert "run 'revoctl db migrate'" in report["reason"]
        rule = RateLimitRule(name="r", requests=1, window_seconds=1)
        result = await limiter.check_rate_limit(rule, "a")
        assert result.allowed and "not migrated" in (result.reason or "")


async def test_the_embedded_database_is_migrated_by_the_first_decision() -> None:
    async with DatabaseManager(DatabaseConfig()) as db:
        limiter = RateLimiter(LimitsConfig(rules=()), store=SqlLimitStore(db))
        rule = RateLimitRule(name="r", requests=1, window_seconds=1)
        first = await limiter.check_rate_limit(rule, "a")
        assert first.allowed and first.reason is None  # decided by the store, not the policy
        assert not (await limiter.check_rate_limit(rule, "a")).allowed
        assert (await limiter.health_check())["status"] == "healthy"
