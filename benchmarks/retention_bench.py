"""Retention: pruning N old ``request_logs`` rows on PostgreSQL, batched under the lease,
against a dry run (counting them) and against the anchor, one bare ``DELETE ... WHERE ts <
$1`` through asyncpg (one statement, one transaction: what the batches avoid).

Each run gets a database of its own (created and dropped here), N rows 500 days old and a
tenth as many from today (kept), loaded by ``COPY``; the table is reloaded before each
timing. Prints seconds, batches and ms per batch, and the ratios to the bare ``DELETE``.

    python benchmarks/retention_bench.py [--rows 200000] [--batch-size 5000]

PostgreSQL comes from ``REVOCTL_BENCH_POSTGRES_URL`` (a SQLAlchemy URL to an admin
database), default ``postgresql+asyncpg://postgres@127.0.0.1:5432/postgres``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from revoctl.core.db import DatabaseConfig, DatabaseManager, prune, upgrade
from revoctl.core.db.settings import RetentionConfig

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def load(conn: asyncpg.Connection, rows: int) -> None:
    """``rows`` rows 500 days old and ``rows // 10`` from today, nothing else."""
    await conn.execute("TRUNCATE request_logs")
    now = datetime.now(UTC)
    old, new = now - timedelta(days=500), now - timedelta(hours=1)
    records = [(old, "POST", "/v1/chat", 200, 1.0)] * rows + [
        (new, "POST", "/v1/chat", 200, 1.0)
    ] * (rows // 10)
    await conn.copy_records_to_table(
        "request_logs",
        records=records,
        columns=["ts", "method", "path", "status_code", "duration_ms"],
    )
    await conn.execute("ANALYZE request_logs")


async def timed(work: Callable[[], Awaitable[object]]) -> tuple[float, object]:
    started = time.perf_counter()
    result = await work()
    return time.perf_counter() - started, result


async def main(rows: int, batch_size: int) -> None:
    admin_url = os.environ.get("REVOCTL_BENCH_POSTGRES_URL", DEFAULT_URL)
    name = f"revoctl_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn(admin_url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    config = RetentionConfig(batch_size=batch_size)
    cutoff = datetime.now(UTC) - timedelta(days=config.request_logs)
    try:
        async with DatabaseManager(DatabaseConfig(url=url), role="bench") as db:
            await upgrade(db)
            conn = await asyncpg.connect(dsn(url))
            try:
                await load(conn, rows)
                dry, counted = await timed(lambda: prune(db, config, dry_run=True))
                await load(conn, rows)
                real, deleted = await timed(lambda: prune(db, config))
                await load(conn, rows)
                bare, status = await timed(
                    lambda: conn.execute("DELETE FROM request_logs WHERE ts < $1", cutoff)
                )
            finally:
                await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    assert isinstance(counted, dict) and isinstance(deleted, dict)
    assert counted["request_logs"] == deleted["request_logs"] == rows, (counted, deleted)
    assert status == f"DELETE {rows}", status
    batches = -(-rows // batch_size)  # DELETEs; an exact multiple adds one empty look
    print(f"{rows} old rows of request_logs (+{rows // 10} kept), batch_size {batch_size}")
    print(
        f"  prune (batched, leased)  {real:7.2f} s  {batches} batches, "
        f"{1000 * real / batches:.1f} ms per batch  x{real / bare:.2f} of the bare DELETE"
    )
    print(f"  prune --dry-run (count)  {dry:7.2f} s  x{dry / bare:.2f}")
    print(f"  bare DELETE (asyncpg)    {bare:7.2f} s  one statement, one transaction")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.batch_size))
