"""``revoctl db ping`` and ``revoctl health`` against a bare asyncpg connect + ``SELECT 1``.

Each pair runs N times in the same run (processes in turn, one of each at a time):

* processes: ``revoctl db ping -o json`` and ``revoctl health -o json`` (secrets and the
  database checked; the database on PostgreSQL) against a bare script doing
  ``asyncpg.connect()`` + ``SELECT 1``, all child processes of this Python, so
  interpreter start-up and imports count on every side (goals: ping at most 1.5x,
  health at most 2x). ``db ping`` answers from the settings its first run validated
  (warming up runs it first; see `revoctl._probe_cache`); the "uncached" row is every
  ping that cannot (a first run, a changed configuration), through Typer and pydantic;
* in-process: ``DatabaseManager.ping()`` (the raw-driver probe: a new connection,
  ``SELECT 1``, one deadline) against a fresh ``asyncpg.connect()`` + ``SELECT 1``;
  and a warm ``SELECT 1`` on the manager's open pool against ``fetchval`` on an open
  connection and against a bare SQLAlchemy engine with the same pool settings.

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
import tempfile

import asyncpg
from _timing import p95, time_async, time_process, write_bytecode
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

        async def pooled() -> None:
            async with db.connection() as connection:
                await connection.execute(text("SELECT 1"))

        conn = await asyncpg.connect(dsn)
        try:
            warm = (
                "warm in-process",
                await time_async(pooled, runs),
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
                await time_async(pooled, runs),
                await time_async(bare_sqlalchemy, runs),
            )
        finally:
            await engine.dispose()
    return [cold, warm, warm_sqlalchemy]


def alternated(
    ours: list[str], our_env: dict[str, str], bare: list[str], env: dict[str, str], runs: int
) -> tuple[list[float], list[float]]:
    """``runs`` runs of each, taken in turn, so that a machine busy with other work weighs
    on both sides alike and the ratio stays meaningful."""
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(runs):
        mine += time_process(ours, our_env, 1, check=False)
        theirs += time_process(bare, env, 1)
    return mine, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="process runs per side")
    parser.add_argument("--calls", type=int, default=500, help="in-process calls per side")
    args = parser.parse_args()

    url = os.environ.get("REVOCTL_BENCH_POSTGRES_URL", DEFAULT_URL)
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    cache = tempfile.TemporaryDirectory()
    env = {
        **os.environ,
        "REVOCTL_DATABASE__URL": url,
        "NO_COLOR": "1",
        "XDG_CACHE_HOME": cache.name,
    }
    # A cache that can be neither read nor written: every run validates the configuration.
    uncached = {**env, "XDG_CACHE_HOME": os.devnull}

    ping = [sys.executable, "-m", "revoctl", "db", "ping", "-o", "json"]
    health = [sys.executable, "-m", "revoctl", "health", "-o", "json"]
    bare = [sys.executable, "-c", BARE_SCRIPT, dsn]
    write_bytecode()
    for argv in (ping, health, bare):
        time_process(argv, env, 2, check=False)  # warm the page cache (and ping's settings)
    rows = []
    processes = (
        ("db ping process", ping, env),
        ("health process", health, env),
        ("db ping uncached", ping, uncached),
    )
    for name, argv, our_env in processes:
        rows.append((name, *alternated(argv, our_env, bare, env, args.runs)))
    cache.cleanup()
    rows += asyncio.run(in_process(url, dsn, args.calls))

    where = url.rpartition("@")[2]
    print(
        f"revoctl vs bare asyncpg (last row: vs bare SQLAlchemy), {where}: "
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
