"""Migration 0005 creates the breaker tables and takes them away again (their columns are
held to the models by the all-table drift check in test_db_migrations)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from revoctl.core.db import DatabaseConfig, DatabaseManager, downgrade, upgrade
from tests.unit.test_db_migrations import tables

BREAKER_TABLES = {"circuit_breaker_state", "circuit_breaker_events", "circuit_breaker_processes"}


@pytest.fixture
async def db() -> AsyncIterator[DatabaseManager]:
    async with DatabaseManager(DatabaseConfig(), role="test") as manager:
        yield manager


async def test_0005_creates_the_breaker_tables_and_drops_them(db: DatabaseManager) -> None:
    await upgrade(db, "0005")
    async with db.connection() as conn:
        assert await conn.run_sync(tables) >= BREAKER_TABLES
    await downgrade(db, "-1")
    async with db.connection() as conn:
        assert not await conn.run_sync(tables) & BREAKER_TABLES
