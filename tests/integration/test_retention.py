"""Retention on PostgreSQL and SQLite: rows of several ages in every table; a prune deletes
only the old ones, a dry run none, in batches of ``batch_size``; a process holding the lease
keeps another process's ``revoctl db prune`` from deleting anything."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from revoctl.core.db import DatabaseConfig, DatabaseManager, LeaseHeldError, prune, upgrade
from revoctl.core.db._retention import release_lease, take_lease
from revoctl.core.db.settings import RetentionConfig
from tests.conftest import run_revoctl
from tests.support.retention import MODELS, ages, count, seed

AGES = {1: 3, 20: 3, 40: 3, 500: 3}
"""Three rows each 1, 20, 40 and 500 days old, in every table."""

KEPT_BY_DEFAULT = {
    "request_logs": [1, 20],  # 30 days
    "model_usage": [1, 20, 40],  # 400 days
    "rate_limit_logs": [1],  # 14 days
    "secret_audit_log": [1, 20, 40],  # 400 days
    "system_metrics": [1],  # 14 days
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'retention.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[DatabaseManager]:
    async with DatabaseManager(DatabaseConfig(url=database_url), role="test") as manager:
        await upgrade(manager)
        yield manager


def expected_deleted(kept: dict[str, list[int]]) -> dict[str, int]:
    return {name: sum(n for age, n in AGES.items() if age not in kept[name]) for name in MODELS}


async def test_prune_deletes_only_rows_past_each_tables_days(db: DatabaseManager) -> None:
    await seed(db, AGES)
    deleted = await prune(db, RetentionConfig())
    assert deleted == expected_deleted(KEPT_BY_DEFAULT)
    for name, kept in KEPT_BY_DEFAULT.items():
        assert await ages(db, name) == sorted([age for age in kept for _ in range(3)]), name


async def test_dry_run_counts_and_deletes_nothing(db: DatabaseManager) -> None:
    await seed(db, AGES)
    counted = await prune(db, RetentionConfig(), dry_run=True)
    assert counted == expected_deleted(KEPT_BY_DEFAULT)
    assert [await count(db, name) for name in MODELS] == [12] * len(MODELS)


async def test_zero_days_keeps_a_table_forever_and_older_than_overrides(
    db: DatabaseManager,
) -> None:
    from datetime import timedelta

    await seed(db, AGES)
    config = RetentionConfig(request_logs=0, system_metrics=0)
    deleted = await prune(db, config)
    assert "request_logs" not in deleted and "system_metrics" not in deleted
    assert await count(db, "request_logs") == 12
    deleted = await prune(db, config, older_than=timedelta(days=10))
    assert deleted["request_logs"] == 9 and deleted["system_metrics"] == 9
    for name in MODELS:
        assert await ages(db, name) == [1, 1, 1], name


async def test_deletes_in_batches_of_batch_size(db: DatabaseManager) -> None:
    await seed(db, {500: 30, 1: 4}, tables=("request_logs",))
    deletes: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM REQUEST_LOGS"):
            deletes.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    deleted = await prune(db, RetentionConfig(batch_size=7))
    assert deleted["request_logs"] == 30
    assert len(deletes) == 5  # 7 + 7 + 7 + 7 + 2
    assert await count(db, "request_logs") == 4


async def test_a_held_lease_stops_another_process_pruning(
    db: DatabaseManager, database_url: str
) -> None:
    await seed(db, AGES)
    assert await take_lease(db, "other-host:1:runtime") == "other-host:1:runtime"
    env = {"REVOCTL_DATABASE__URL": database_url}
    held = run_revoctl(["db", "prune", "-o", "json"], env=env)
    assert held.returncode == 1, held.stderr
    assert held.stderr.count("\n") == 1 and "other-host:1:runtime" in held.stderr
    assert held.stdout == ""
    assert [await count(db, name) for name in MODELS] == [12] * len(MODELS)
    with pytest.raises(LeaseHeldError):
        await prune(db, RetentionConfig())
    dry = run_revoctl(["db", "prune", "--dry-run", "-o", "json"], env=env)
    assert json.loads(dry.stdout) == expected_deleted(KEPT_BY_DEFAULT)

    await release_lease(db, "other-host:1:runtime")
    done = run_revoctl(["db", "prune", "--older-than", "10d", "-o", "json"], env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == dict.fromkeys(MODELS, 9)
    # the pruner gave the lease back: another takes it at once
    assert await take_lease(db, "next:2:runtime") == "next:2:runtime"


async def test_a_lapsed_lease_is_taken_over(db: DatabaseManager) -> None:
    assert await take_lease(db, "dead:1:runtime", seconds=-1) == "dead:1:runtime"
    assert await take_lease(db, "alive:2:runtime") == "alive:2:runtime"
    assert await take_lease(db, "third:3:runtime") == "alive:2:runtime"


def test_bad_duration_is_one_line_and_exit_2() -> None:
    result = run_revoctl(["db", "prune", "--older-than", "ninety days"])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "invalid duration" in result.stderr


@pytest.mark.slow
async def test_a_running_gateway_prunes_every_interval_seconds(tmp_path: Path) -> None:
    """The gateway applies [retention] one interval after start and again each interval: old
    rows seeded while it runs go too."""
    import asyncio
    import time

    from starlette.testclient import TestClient

    from revoctl.config import load_config
    from revoctl.runtime.app import create_app

    interval = 0.5
    url = f"sqlite+aiosqlite:///{tmp_path / 'served.db'}"
    config = tmp_path / "revoctl.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n[gateway]\nauth = "none"\n'
        '[limits]\nstore = "memory"\n[breakers]\nstore = "memory"\n'
        f"[retention]\ninterval_seconds = {interval}\n"
    )
    async with DatabaseManager(DatabaseConfig(url=url), role="test") as db:
        await upgrade(db)
        await seed(db, AGES)

        async def pruned(expected: int) -> None:
            deadline = time.monotonic() + 10 * interval + 10  # start-up on a busy machine
            while await count(db, "rate_limit_logs") != expected:
                assert time.monotonic() < deadline, await ages(db, "rate_limit_logs")
                await asyncio.sleep(interval / 5)

        with TestClient(create_app(load_config(config))):
            await pruned(3)
            assert await ages(db, "request_logs") == [1, 1, 1, 20, 20, 20]
            await seed(db, {100: 2}, tables=("rate_limit_logs",))
            assert await count(db, "rate_limit_logs") == 5
            await pruned(3)


@pytest.mark.slow
@pytest.mark.postgres
async def test_two_pruners_at_once_one_prunes_the_other_is_refused(postgres_url: str) -> None:
    """``db prune`` in two processes: the second, started while the first holds the lease
    (600 batches of 25 keep it busy for seconds), deletes nothing and exits 1; the first deletes
    every old row."""
    import asyncio
    import subprocess
    import sys
    import time

    from sqlalchemy import select

    from revoctl.core.db._sql import table
    from revoctl.core.db.models import MaintenanceLease

    old_rows = 15_000
    async with DatabaseManager(DatabaseConfig(url=postgres_url), role="test") as db:
        await upgrade(db)
        await seed(db, {500: old_rows, 1: 5}, tables=("request_logs",))
        env = {"REVOCTL_DATABASE__URL": postgres_url, "REVOCTL_RETENTION__BATCH_SIZE": "25"}
        command = [sys.executable, "-m", "revoctl", "db", "prune", "-o", "json"]
        first = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        leases = table(MaintenanceLease)
        deadline = time.monotonic() + 30
        while not await db.transaction(lambda s: s.scalar(select(leases.c.holder))):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            await asyncio.sleep(0.05)
        second = await asyncio.to_thread(run_revoctl, ["db", "prune", "-o", "json"], env=env)
        out, err = await asyncio.to_thread(first.communicate, timeout=120)
        assert first.returncode == 0, err
        assert second.returncode == 1, (second.stdout, second.stderr)
        assert "another process is pruning" in second.stderr and second.stdout == ""
        assert json.loads(out)["request_logs"] == old_rows
        assert await count(db, "request_logs") == 5


def test_a_negative_retention_is_refused_at_load_naming_the_key() -> None:
    result = run_revoctl(["--set", "retention.request_logs=-1", "db", "prune"])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "retention.request_logs" in result.stderr


async def test_the_table_says_deleted_or_would_delete(
    db: DatabaseManager, database_url: str
) -> None:
    await seed(db, {500: 2}, tables=("system_metrics",))
    env = {"REVOCTL_DATABASE__URL": database_url, "NO_COLOR": "1"}
    dry = run_revoctl(["db", "prune", "--dry-run"], env=env)
    assert dry.stdout.split("\n")[0].split() == ["TABLE", "WOULD", "DELETE"]
    assert ["system_metrics", "2"] in [line.split() for line in dry.stdout.splitlines()]
    done = run_revoctl(["db", "prune"], env=env)
    assert done.stdout.split("\n")[0].split() == ["TABLE", "DELETED"]
    assert ["system_metrics", "2"] in [line.split() for line in done.stdout.splitlines()]
