"""`SqlLimitStore`: counters in the ``rate_limit_state`` table (migration 0003).

One decision is one short transaction, atomic on SQLite (shared by the processes of
one machine) and on PostgreSQL:

1. an upsert that takes the key's row lock before anything is read: a no-op
   ``ON CONFLICT DO UPDATE`` on PostgreSQL locks the row and returns its latest
   committed state; on SQLite the same write takes the database's write lock first,
   so no reader's snapshot goes stale. It returns the database server's clock,
   read after the lock, too;
2. the algorithm runs here, on that state and that clock (`revoctl.core.limits._algorithms`);
3. an ``UPDATE`` when the decision changed the state, then COMMIT.

Concurrent decisions on one key queue on the lock; serialization failures and a
locked SQLite file are retried whole by `DatabaseManager.transaction`, which also
migrates an embedded SQLite database first and says "not migrated" for a missing table.
The statements are built from the ``RateLimitState`` model's table (SQLAlchemy Core),
once per dialect, on the first decision: a store only pinged imports no SQLAlchemy.

Reservations (a request's rules, budget and parallel slot) are one transaction each, on
the rules' rows and the tables of migration 0008 (`revoctl.core.limits.stores._sql_reservations`).

The pool is the process's own, shared with everything else, and waits ``pool_timeout``
(30 s) for a free connection; a decision waits at most ``pool_wait`` (the limiter's
``pool_wait_seconds``) and then raises `PoolExhaustedError`, for ``failure_mode`` to
answer that call.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from revoctl.core.db._errors import not_migrated
from revoctl.core.db._revisions import is_applied
from revoctl.core.db._sql import server_clock, table, upsert
from revoctl.core.limits._algorithms import Algorithm, State, algorithm_for
from revoctl.core.limits.base import Op, RateLimitResult
from revoctl.core.limits.settings import RateLimitRule
from revoctl.core.limits.stores._sql_reservations import RuleRows, SqlReservations

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from sqlalchemy import Executable
    from sqlalchemy.ext.asyncio import AsyncSession

    from revoctl.core.db import DatabaseManager
    from revoctl.core.limits.reservations import HeldLease, Reservation, Reserved, Settlement

T = TypeVar("T")

MIGRATIONS = (("0003", "rate_limit_state"), ("0008", "limit_budgets"))
"""The revisions that create the store's tables, each with a table it creates, named here
for `SqlLimitStore.ping`'s message: the ping runs on the raw driver, without the models."""
SWEEP_EVERY = 1000
"""Decisions between two deletions of rows whose state ran out."""
SWEEP_BATCH = 500


@dataclass(frozen=True)
class _Statements:
    """The store's statements for one dialect; parameters are named after the columns."""

    lock: Executable
    """Upsert that takes the key's row lock and returns (algorithm, state, now)."""
    read: Executable
    """A peek: (algorithm, state, now) without a lock; no row for a key never written."""
    now: Executable
    write: Executable
    """The new state; the key is ``key_rule``, ``key_key``."""
    keys: Executable
    sweep: Executable
    count_rule: Executable
    count_key: Executable
    delete_rule: Executable
    delete_key: Executable


@functools.cache
def _statements(backend: str) -> _Statements:
    from sqlalchemy import bindparam, delete, func, select, tuple_, update

    from revoctl.core.db.models import RateLimitState

    rows = table(RateLimitState)
    c = rows.c
    now = server_clock(backend)
    this_rule = c.rule == bindparam("rule")
    this_key = c.key == bindparam("key")
    live = c.expires_at > now
    lock = upsert(backend, rows).on_conflict_do_update(
        index_elements=[c.rule, c.key], set_={"expires_at": c.expires_at}
    )
    expired = select(c.rule, c.key).where(c.expires_at <= now).limit(SWEEP_BATCH)
    count = select(func.count()).select_from(rows)
    return _Statements(
        lock=lock.returning(c.algorithm, c.state, now),
        read=select(c.algorithm, c.state, now).where(this_rule, this_key),
        now=select(now),
        write=update(rows).where(c.rule == bindparam("key_rule"), c.key == bindparam("key_key")),
        keys=select(c.key)
        .where(this_rule, c.algorithm == bindparam("algorithm"), live)
        .order_by(c.key),
        sweep=delete(rows).where(tuple_(c.rule, c.key).in_(expired)),
        count_rule=count.where(this_rule, live),
        count_key=count.where(this_rule, this_key, live),
        delete_rule=delete(rows).where(this_rule),
        delete_key=delete(rows).where(this_rule, this_key),
    )


class SqlLimitStore:
    """Counters in the database behind ``db`` (SQLite or PostgreSQL); a call waits at
    most ``pool_wait`` seconds for a free pooled connection (None: ``pool_timeout``)."""

    kind = "sql"
    remote = True

    def __init__(self, db: DatabaseManager, *, pool_wait: float | None = None) -> None:
        self.db = db
        self.pool_wait = pool_wait
        self._algorithms: dict[str, tuple[RateLimitRule, Algorithm]] = {}
        self._decisions = 0
        self._reservations: SqlReservations | None = None

    def describe(self) -> str:
        return f"{self.db.backend} {self.db.describe_url()}"

    def _algorithm(self, rule: RateLimitRule) -> Algorithm:
        cached = self._algorithms.get(rule.name)
        if cached is None or cached[0] is not rule:
            cached = self._algorithms[rule.name] = (rule, algorithm_for(rule))
        return cached[1]

    async def apply(self, rule: RateLimitRule, key: str, op: Op, weight: int) -> RateLimitResult:
        algorithm = self._algorithm(rule)
        sql = _statements(self.db.backend)
        names = {"rule": rule.name, "key": key, "algorithm": rule.algorithm.value}

        async def decide(session: AsyncSession) -> RateLimitResult:
            if op == "peek":
                row = (await session.execute(sql.read, names)).first()
            else:
                empty = {"state": None, "expires_at": 0.0}
                row = (await session.execute(sql.lock, names | empty)).first()
            state: State | None = None
            if row is None:  # a peek at a key never written
                now = float((await session.execute(sql.now)).scalar_one())
            else:
                stored_algorithm, stored, now = row[0], row[1], float(row[2])
                if stored is not None and stored_algorithm == rule.algorithm.value:
                    state = tuple(json.loads(stored))
            new, result = algorithm.apply(state, now, op, weight)
            if new is not None:
                values = {
                    "algorithm": rule.algorithm.value,
                    "state": json.dumps(new),
                    "expires_at": now + result.reset_after,
                }
                await session.execute(sql.write, values | {"key_rule": rule.name, "key_key": key})
            return result

        result = await self._run(decide)
        if op != "peek":
            self._decisions += 1
            if self._decisions % SWEEP_EVERY == 0:
                await self._run(self._delete_expired)
        return result

    async def _delete_expired(self, session: AsyncSession) -> None:
        await session.execute(_statements(self.db.backend).sweep)
        await self._reserving().sweep(session)

    async def _run(self, fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
        return await self.db.transaction(fn, pool_wait=self.pool_wait)

    async def keys(self, rule: RateLimitRule) -> list[str]:
        sql = _statements(self.db.backend)

        async def select(session: AsyncSession) -> list[str]:
            rows = await session.execute(
                sql.keys, {"rule": rule.name, "algorithm": rule.algorithm.value}
            )
            return [str(row[0]) for row in rows]

        return await self._run(select)

    async def reset(self, rule: RateLimitRule, key: str | None) -> int:
        sql = _statements(self.db.backend)
        count, remove = (
            (sql.count_rule, sql.delete_rule) if key is None else (sql.count_key, sql.delete_key)
        )
        names: dict[str, Any] = {"rule": rule.name} | ({} if key is None else {"key": key})

        async def delete(session: AsyncSession) -> int:
            counted = (await session.execute(count, names)).scalar_one()
            await session.execute(remove, names)
            return int(counted)

        return await self._run(delete)

    # ------------------------------------------------------------------ reservations

    def _reserving(self) -> SqlReservations:
        if self._reservations is None:
            sql = _statements(self.db.backend)
            rows = RuleRows(sql.lock, sql.write, self._algorithm)
            self._reservations = SqlReservations(self.db.backend, rows)
        return self._reservations

    async def reserve(self, reservation: Reservation, lease_seconds: float) -> Reserved:
        reservations = self._reserving()
        reserved = await self._run(
            lambda session: reservations.reserve(session, reservation, lease_seconds)
        )
        self._decisions += 1
        if self._decisions % SWEEP_EVERY == 0:
            await self._run(self._delete_expired)
        return reserved

    async def settle(self, settlement: Settlement) -> list[RateLimitResult]:
        reservations = self._reserving()
        return await self._run(lambda session: reservations.settle(session, settlement))

    async def renew(self, held: Sequence[HeldLease], lease_seconds: float) -> None:
        reservations = self._reserving()
        await self._run(lambda session: reservations.renew(session, held, lease_seconds))

    async def spent(self, account: str, period: int) -> int:
        reservations = self._reserving()
        return await self._run(lambda session: reservations.spent(session, account, period))

    async def ping(self) -> None:
        """Reach the database on the raw driver and check that migrations 0003 (the rules'
        state) and 0008 (budgets and slots) are applied.

        :raises BackendUnavailableError: the database cannot be reached.
        :raises UsageError: the table is not there yet.
        """
        applied = await self.db.applied_revisions()
        for revision, table_name in MIGRATIONS:
            if not is_applied(revision, applied):
                raise not_migrated(table_name)

    async def close(self) -> None:
        """Nothing of its own: the database manager is closed by its owner."""
