"""The database's statement and checkout histograms, fed by the manager's observer, on a
real PostgreSQL server: each statement under its operation, each checkout's wait, and a
checkout that ran out of ``pool_timeout`` counted as a timeout."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from revoctl.core.db import DatabaseConfig, DatabaseManager
from revoctl.core.db._stats import operation_of
from revoctl.runtime.metrics import GatewayMetrics
from revoctl.runtime.metrics_sync import DbMetrics

pytestmark = pytest.mark.postgres

POOL_TIMEOUT = 0.3


def count(metrics: GatewayMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("statement", "operation"),
    [
        ("SELECT 1", "select"),
        ("  (select 1)", "select"),
        ("INSERT INTO t VALUES (1)", "insert"),
        ("update t set a = 1", "update"),
        ("\n DELETE FROM t", "delete"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "other"),
        ("CREATE TABLE t (a int)", "other"),
        ("", "other"),
    ],
)
def test_a_statement_is_told_by_its_first_word(statement: str, operation: str) -> None:
    assert operation_of(statement) == operation


async def test_statements_and_checkouts_reach_the_histograms(postgres_url: str) -> None:
    metrics = GatewayMetrics()
    config = DatabaseConfig(url=postgres_url, pool_size=1, max_overflow=0,
                            pool_timeout=POOL_TIMEOUT)  # fmt: skip
    async with DatabaseManager(config) as db:
        db.stats.observer = DbMetrics(metrics)
        async with db.connection() as conn:
            await conn.execute(text("CREATE TABLE m (a int)"))
            await conn.execute(text("INSERT INTO m VALUES (1), (2)"))
            await conn.execute(text("UPDATE m SET a = 3 WHERE a = 2"))
            await conn.execute(text("SELECT a FROM m"))
            await conn.execute(text("SELECT pg_sleep(0.2)"))
            await conn.execute(text("DELETE FROM m"))
            await conn.commit()
        statements = "revoctl_db_statement_seconds_count"
        for operation in ("insert", "update", "delete"):
            assert count(metrics, statements, operation=operation) == 1
        assert count(metrics, statements, operation="select") >= 2
        assert count(metrics, statements, operation="other") >= 1  # the CREATE TABLE
        slept = count(metrics, "revoctl_db_statement_seconds_bucket", operation="select", le="0.1")
        assert slept <= count(metrics, statements, operation="select") - 1  # pg_sleep(0.2)
        assert count(metrics, "revoctl_db_pool_checkout_seconds_count") >= 1
        assert count(metrics, "revoctl_db_pool_checkout_timeouts_total") == 0

        async with db.connection():  # the only connection held: the next checkout waits
            with pytest.raises(Exception) as raised:
                await asyncio.wait_for(_checkout(db), timeout=POOL_TIMEOUT * 10)
        assert isinstance(raised.value, PoolTimeoutError) or "timeout" in str(raised.value).lower()
        assert count(metrics, "revoctl_db_pool_checkout_timeouts_total") == 1
        assert db.stats.checkout_timeouts == 1
        waited = count(metrics, "revoctl_db_pool_checkout_seconds_sum")
        assert waited >= POOL_TIMEOUT


async def _checkout(db: DatabaseManager) -> None:
    async with db.connection():
        pass
