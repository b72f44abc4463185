"""``revoctl db ping`` against a bare asyncpg connect + ``SELECT 1``, in the same run.

Two pairs, each run N times:

* processes: ``revoctl db ping -o json`` and a bare script doing ``asyncpg.connect()``
  + ``SELECT 1``, both child processes of this Python, so interpreter start-up and
  imports count on both sides;
* in-process: a fresh ``DatabaseManager`` + ``ping()`` (engine, pool, event hooks,
  a new connection) against a fresh ``asyncpg.connect()`` + ``SELECT 1``; and a
  warm ``ping()`` on an open pool against ``fetchval("SELECT 1")`` on an open
  connection.

Prints median and p95 in ms and the ratios revoctl / bare.

    python benchmarks/db_ping.py [--runs 20] [--calls 500]

PostgreSQL comes from ``REVOCTL_BENCH_POSTGRES_URL`` (a SQLAlchemy URL), default
``postgresql+asyncpg://postgres@127.0.0.1:5432/postgres``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys

import asyncpg
from _timing import p95, time_async, time_process
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from revoctl.core import DatabaseConfig
from revoctl.core.db import DatabaseManager

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"

BARE_SCRIPT = """
import asyncio, sys
import asyncpg

async def main() -> None:
    conn = await asyncpg.connect(sys.argv[1])
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()

asyncio.run(main())
"""


async def in_process(url: str, dsn: str, runs: int) -> list[tuple[str, list[float], list[float]]]:
    config = DatabaseConfig(url=url)

    async def cold_manager() -> None:
        async with DatabaseManager(config, role="bench") as db:
            await db.ping()

    async def cold_asyncpg() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    cold = (
        "cold in-process",
        await time_async(cold_manager, runs),
        await time_async(cold_asyncpg, runs),
    )
    async with DatabaseManager(config, role="bench") as db:
        conn = await asyncpg.connect(dsn)
        try:
            warm = (
                "warm in-process",
                await time_async(db.ping, runs),
                await time_async(lambda: conn.fetchval("SELECT 1"), runs),
            )
        finally:
            await conn.close()
        # The same pool settings on a bare SQLAlchemy engine: what revoctl adds on top of
        # SQLAlchemy (stats, retries, error translation), apart from SQLAlchemy's own cost.
        engine = create_async_engine(url, pool_pre_ping=config.pool_pre_ping)

        async def bare_sqlalchemy() -> None:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

        try:
            warm_sqlalchemy = (
                "warm vs SQLAlchemy",
                await time_async(db.ping, runs),
                await time_async(bare_sqlalchemy, runs),
            )
        finally:
            await engine.dispose()
    return [cold, warm, warm_sqlalchemy]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="process runs per side")
    parser.add_argument("--calls", type=int, default=500, help="in-process calls per side")
    args = parser.parse_args()

    url = os.environ.get("REVOCTL_BENCH_POSTGRES_URL", DEFAULT_URL)
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    env = {**os.environ, "REVOCTL_DATABASE__URL": url, "NO_COLOR": "1"}

    revoctl = [sys.executable, "-m", "revoctl", "db", "ping", "-o", "json"]
    bare = [sys.executable, "-c", BARE_SCRIPT, dsn]
    time_process(revoctl, env, 2)  # warm the page cache and bytecode
    time_process(bare, env, 2)
    rows = [("process", time_process(revoctl, env, args.runs), time_process(bare, env, args.runs))]
    rows += asyncio.run(in_process(url, dsn, args.calls))

    where = url.rpartition("@")[2]
    print(
        f"db ping vs bare asyncpg (last row: vs bare SQLAlchemy), {where}: "
        f"{args.runs} processes / {args.calls} calls each\n"
    )
    header = f"{'case':<18} {'revoctl med':>11} {'p95':>8} {'bare med':>9} {'p95':>8} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for name, ours, theirs in rows:
        mine, base = statistics.median(ours), statistics.median(theirs)
        print(
            f"{name:<18} {mine:>11.2f} {p95(ours):>8.2f} {base:>9.2f} {p95(theirs):>8.2f}"
            f" {mine / base:>6.2f}x"
        )


if __name__ == "__main__":
    main()
