"""Migration 0004: the breaker tables match their models, and the probe knows the revision."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from revoctl.core.db import REVISIONS, DatabaseConfig, DatabaseManager, downgrade, upgrade
from revoctl.core.db._migrations import script_directory
from revoctl.core.db.models import Base
from tests.unit.test_db_migrations import _table_of, tables

BREAKER_TABLES = {"circuit_breaker_state", "circuit_breaker_events", "circuit_breaker_processes"}


def breaker_drift(connection: Connection) -> list[object]:
    diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    return [d for d in diffs if _table_of(d) in BREAKER_TABLES]


@pytest.fixture
async def db() -> AsyncIterator[DatabaseManager]:
    async with DatabaseManager(DatabaseConfig(), role="test") as manager:
        yield manager


def test_the_probe_lists_every_shipped_revision_in_order() -> None:
    shipped = [r.revision for r in script_directory().walk_revisions()]
    assert tuple(reversed(shipped)) == REVISIONS


async def test_0004_creates_the_breaker_tables_as_modelled_and_drops_them(
    db: DatabaseManager,
) -> None:
    await upgrade(db, "0004")
    async with db.connection() as conn:
        assert await conn.run_sync(tables) >= BREAKER_TABLES
        assert await conn.run_sync(breaker_drift) == []
    await downgrade(db, "-1")
    async with db.connection() as conn:
        assert not await conn.run_sync(tables) & BREAKER_TABLES
