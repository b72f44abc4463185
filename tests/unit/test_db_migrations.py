"""Packaged Alembic migrations on SQLite: up, down, status, errors, offline SQL, env.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect

from revoctl.core._process import Role
from revoctl.core.db import (
    DatabaseConfig,
    DatabaseManager,
    current,
    downgrade,
    heads,
    history,
    upgrade,
)
from revoctl.core.db._migrations import alembic_config, script_directory
from revoctl.core.db.models import Base
from revoctl.core.errors import NotFoundError, UsageError

INITIAL_TABLES = {"request_logs", "model_usage", "rate_limit_logs", "system_metrics"}


def tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def model_drift(connection: Connection) -> list[Any]:
    """Differences between the models and the schema the migrations build, for every table."""
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


@pytest.fixture
async def db() -> AsyncIterator[DatabaseManager]:
    async with DatabaseManager(DatabaseConfig(), role="test") as manager:
        yield manager


def test_the_revisions_the_probes_know_are_the_shipped_ones() -> None:
    """Probes read the migration state without Alembic, against the revision files read as
    text: they must list every shipped revision, oldest first."""
    from revoctl.core.db import SHIPPED_REVISIONS as REVISIONS

    shipped = [script.revision for script in script_directory().walk_revisions()]
    assert list(REVISIONS) == shipped[::-1]


def test_initial_revision_is_0001_and_the_history_is_linear() -> None:
    scripts = script_directory()
    assert scripts.get_revision("0001").down_revision is None
    assert len(heads()) == 1
    assert [r.revision for r in scripts.walk_revisions()][-1] == "0001"


async def test_upgrade_then_downgrade_to_base(db: DatabaseManager) -> None:
    head = heads()[0]
    assert await current(db) == {"current": None, "head": head, "pending": len(await history(db))}

    result = await upgrade(db)
    assert result["from"] is None and result["to"] == head
    assert result["applied"][0] == "0001" and result["applied"][-1] == head
    async with db.connection() as conn:
        assert await conn.run_sync(tables) >= INITIAL_TABLES
        assert await conn.run_sync(model_drift) == []
    assert await current(db) == {"current": head, "head": head, "pending": 0}
    assert all(entry["applied"] for entry in await history(db))

    again = await upgrade(db)
    assert again == {"from": head, "to": head, "applied": []}

    reverted = await downgrade(db, "base")
    assert reverted["from"] == head and reverted["to"] is None
    assert reverted["reverted"][-1] == "0001"
    async with db.connection() as conn:
        assert not (INITIAL_TABLES & await conn.run_sync(tables))
    assert (await current(db))["current"] is None


async def test_step_by_step_and_history_marks(db: DatabaseManager) -> None:
    await upgrade(db, "0001")
    entries = {entry["revision"]: entry for entry in await history(db)}
    assert entries["0001"]["applied"] and entries["0001"]["current"]
    assert entries["0001"]["description"].startswith("Initial tables")
    assert all(not e["applied"] for rev, e in entries.items() if rev != "0001")
    assert await downgrade(db, "-1") == {"from": "0001", "to": None, "reverted": ["0001"]}


async def test_a_manager_of_its_own_migrates(revoctl_home: Path) -> None:
    async with DatabaseManager(DatabaseConfig(), role=Role.MIGRATE) as manager:
        result = await upgrade(manager, "0001")
    assert result["applied"] == ["0001"]
    async with DatabaseManager(DatabaseConfig(), role=Role.MIGRATE) as manager:
        assert (await current(manager))["current"] == "0001"


async def test_unknown_revision_is_not_found(db: DatabaseManager) -> None:
    with pytest.raises(NotFoundError, match="nope"):
        await upgrade(db, "nope")
    with pytest.raises(NotFoundError, match="nope"):
        await downgrade(db, "nope")


async def test_downgrade_above_the_current_revision_is_a_usage_error(db: DatabaseManager) -> None:
    with pytest.raises(UsageError, match="migration refused"):
        await downgrade(db, "0001")


async def test_unknown_revision_in_the_database_reports_pending_none(db: DatabaseManager) -> None:
    await upgrade(db, "0001")
    async with db.connection() as conn:
        await conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'from-the-future'")
        await conn.commit()
    assert (await current(db))["pending"] is None
    assert (await db.health_check())["status"] == "degraded"


async def test_offline_sql_prints_and_touches_nothing(revoctl_home: Path) -> None:
    result = await upgrade(DatabaseManager(DatabaseConfig()), "0001", sql=True)
    assert "CREATE TABLE request_logs" in result["sql"]
    assert "INSERT INTO alembic_version" in result["sql"]
    assert not (revoctl_home / "revoctl.db").exists()
    postgres = DatabaseConfig(url="postgresql+asyncpg://u:SECRETPW@db.invalid/app")
    pg_sql = (await upgrade(DatabaseManager(postgres), "0001", sql=True))["sql"]
    assert "BIGSERIAL" in pg_sql and "TIMESTAMP WITH TIME ZONE" in pg_sql
    assert "SECRETPW" not in pg_sql


def test_env_py_opens_its_own_engine_without_a_connection(tmp_path: Path) -> None:
    """Plain Alembic use (no running loop, no connection handed in) takes the NullPool path."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}"
    command.upgrade(alembic_config(url=url), "0001")
    engine = create_engine(f"sqlite:///{tmp_path / 'plain.db'}")
    with engine.connect() as conn:
        assert tables(conn) >= INITIAL_TABLES
        assert MigrationContext.configure(conn).get_current_heads() == ("0001",)
    engine.dispose()


def test_migrations_ship_inside_the_package() -> None:
    location = Path(script_directory().dir)
    assert (location / "env.py").is_file()
    assert (location / "versions" / "0001_initial.py").is_file()
