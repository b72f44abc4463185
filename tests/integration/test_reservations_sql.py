"""Reservations on the SQL store: migration 0008's tables, one transaction per reservation
and settlement and one statement for a renewal, and exactness across processes: a budget
admits exactly what fits, and a slot cap is never exceeded, when four processes reserve
at once on PostgreSQL (and on SQLite shared by processes).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, event

from revoctl.core.db import DatabaseConfig, DatabaseManager, downgrade, upgrade
from revoctl.core.db.models import Base
from revoctl.core.limits import RateLimitRule, SqlLimitStore
from revoctl.core.limits.reservations import (
    LEASE_SECONDS,
    RENEW_SECONDS,
    BudgetCharge,
    BudgetSettlement,
    HeldLease,
    Reservation,
    RuleCharge,
    Settlement,
    SlotCharge,
    SlotRelease,
    to_nano,
)
from tests.conftest import run_revoctl
from tests.unit.test_db_migrations import tables

RESERVATION_TABLES = {"limit_budgets", "limit_slots", "limit_leases"}
REPO = Path(__file__).parents[2]
DAY = 86_400.0


def drift(connection: Connection) -> list[object]:
    diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    return [d for d in diffs if "limit_" in repr(d)]


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of either kind (resolved from a sync fixture: the server fixtures
    run their own event loop)."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite+aiosqlite:///{tmp_path / 'reservations.db'}"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[DatabaseManager]:
    async with DatabaseManager(DatabaseConfig(url=database_url), role="test") as manager:
        yield manager


async def test_0008_creates_the_tables_as_modelled_and_drops_them(db: DatabaseManager) -> None:
    await upgrade(db, "0008")
    async with db.connection() as conn:
        assert await conn.run_sync(tables) >= RESERVATION_TABLES
        assert await conn.run_sync(drift) == []
    await downgrade(db, "0007")
    async with db.connection() as conn:
        assert not await conn.run_sync(tables) & RESERVATION_TABLES


class Recorder:
    """Counts the statements and the commits on ``db``'s engine."""

    def __init__(self, db: DatabaseManager) -> None:
        self.engine = db.engine.sync_engine
        self.statements: list[str] = []
        self.commits = 0
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "commit", self._commit)

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement.split(None, 1)[0].upper())

    def _commit(self, conn: Any) -> None:
        self.commits += 1

    def take(self) -> tuple[int, list[str]]:
        seen = (self.commits, self.statements)
        self.commits, self.statements = 0, []
        return seen

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)


async def test_one_transaction_per_reservation_and_settlement_one_statement_to_renew(
    db: DatabaseManager,
) -> None:
    await upgrade(db)
    store = SqlLimitStore(db)
    rules = (
        RateLimitRule(name="requests", requests=100, window_seconds=60),
        RateLimitRule(name="tokens", requests=1000, window_seconds=60),
    )
    cost = to_nano(0.02, up=True)
    leases = [f"holder1-{n}" for n in range(20)]
    await store.spent("warm-up", 0)  # the pool's first connection, and its setup
    recorder = Recorder(db)
    try:
        for lease in leases:
            answer = await store.reserve(
                Reservation(
                    "team",
                    rules=tuple(RuleCharge(rule, "team", 1) for rule in rules),
                    budget=BudgetCharge("team", 0, to_nano(1, up=False), cost, DAY),
                    slot=SlotCharge("team", 100, lease),
                ),
                15,
            )
            assert answer.allowed
            assert recorder.take()[0] == 1  # one transaction, all parts
        await store.settle(
            Settlement(
                "team",
                refunds=tuple(RuleCharge(rule, "team", 1) for rule in rules),
                budget=BudgetSettlement("team", 0, -cost // 2, DAY),
                slot=SlotRelease("team", leases[0]),
            )
        )
        assert recorder.take()[0] == 1
        await store.renew([HeldLease("team", "team", lease) for lease in leases[1:]], 15)
        commits, statements = recorder.take()
        assert (commits, statements) == (1, ["UPDATE"])  # every lease of the holder at once
    finally:
        recorder.close()


# ---------------------------------------------------------------------- several processes

PROCESSES = 4
TASKS = 50
AMOUNT = to_nano(0.03, up=True)
LIMIT = to_nano(1, up=False)
"""33 reservations of 0.03 fit a budget of 1, of 200 attempts."""
CAP = 5
HOLD = 0.2
"""Seconds a slot is held: long enough that the 200 tasks keep every slot taken."""


def write_config(tmp_path: Path, database: str) -> Path:
    path = tmp_path / "reservations.toml"
    path.write_text(
        '[limits]\nstore = "sql"\nfailure_mode = "closed"\ntimeout_seconds = 30\n'
        f"[database]\npool_size = 5\nmax_overflow = 5\nconnect_timeout = 30\n{database}\n"
    )
    done = run_revoctl(["--config", str(path), "db", "migrate"])
    assert done.returncode == 0, done.stderr
    return path


def run_workers(config: Path, *args: object) -> list[dict[str, Any]]:
    """`tests.support.reservations_worker` in ``PROCESSES`` processes, started together."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "tests.support.reservations_worker", str(config)]
    argv += [str(arg) for arg in args]
    workers = [
        subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for worker in workers:
            line = worker.stdout.readline()  # type: ignore[union-attr]
            assert line.strip() == "ready", worker.stderr.read()  # type: ignore[union-attr]
        for worker in workers:
            worker.stdin.write("go\n")  # type: ignore[union-attr]
            worker.stdin.flush()  # type: ignore[union-attr]
        results = []
        for worker in workers:
            out, err = worker.communicate(timeout=300)
            assert worker.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that overlap at any one time."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    database = ""
    if request.param == "postgres":
        database = f'url = "{request.getfixturevalue("postgres_url")}"'
    yield write_config(tmp_path, database)


@pytest.mark.slow
def test_a_budget_admits_exactly_what_fits_across_processes(config: Path) -> None:
    results = run_workers(config, "budget", "team", TASKS, AMOUNT, LIMIT)
    assert sum(r["failed"] for r in results) == 0, results
    assert sum(r["admitted"] for r in results) == LIMIT // AMOUNT  # 33: not one more, not less


@pytest.mark.slow
def test_a_slot_cap_holds_across_processes(config: Path) -> None:
    results = run_workers(config, "slots", "team", TASKS, CAP, 3, HOLD)
    assert sum(r["failed"] for r in results) == 0, results
    held = [tuple(span) for r in results for span in r["held"]]
    assert len(held) > CAP  # slots were freed and taken again
    assert 2 <= most_at_once(held) <= CAP  # type: ignore[arg-type]  # at once, never more


async def _slot_free(url: str, account: str, cap: int) -> bool:
    """Whether one of ``account``'s ``cap`` slots can be taken now (it is given back)."""
    async with DatabaseManager(DatabaseConfig(url=url), role="test") as db:
        store = SqlLimitStore(db)
        lease = f"probe-{time.monotonic_ns()}"
        answer = await store.reserve(Reservation(account, slot=SlotCharge(account, cap, lease)), 1)
        if answer.allowed:
            await store.settle(Settlement(account, slot=SlotRelease(account, lease)))
        return answer.allowed


@pytest.mark.postgres
@pytest.mark.slow
def test_a_process_renews_its_slots_and_they_are_free_within_a_lease_once_it_dies(
    tmp_path: Path, postgres_url: str
) -> None:
    """The holder keeps its slots past several leases by renewing them; killed (no chance
    to settle), its slots are free again within ``LEASE_SECONDS`` (the CONTRACT: 30 s)."""
    config = write_config(tmp_path, f'url = "{postgres_url}"')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "tests.support.reservations_worker", str(config)]
    holder = subprocess.Popen(
        [*argv, "hold", "team", str(CAP)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
        holder.stdin.write("go\n")  # type: ignore[union-attr]
        holder.stdin.flush()  # type: ignore[union-attr]
        assert json.loads(holder.stdout.readline()) == {"held": CAP}  # type: ignore[union-attr]
        held_until = time.monotonic() + LEASE_SECONDS + 2 * RENEW_SECONDS
        while time.monotonic() < held_until:  # past the first leases: renewed
            assert not asyncio.run(_slot_free(postgres_url, "team", CAP))
            time.sleep(1)
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=10)
        killed = time.monotonic()
        deadline = killed + LEASE_SECONDS + RENEW_SECONDS
        while not asyncio.run(_slot_free(postgres_url, "team", CAP)):
            assert time.monotonic() < deadline, "the dead process's slots were not freed"
            time.sleep(0.25)
        freed_after = time.monotonic() - killed
        # the last renewal was at most RENEW_SECONDS before the kill
        assert LEASE_SECONDS - RENEW_SECONDS - 1 <= freed_after <= LEASE_SECONDS + 1
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.communicate(timeout=10)
