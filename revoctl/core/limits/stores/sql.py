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
locked SQLite file are retried whole by `DatabaseManager.run_transaction`.

The pool is the process's own, shared with everything else, and waits ``pool_timeout``
(30 s) for a free connection; a decision waits at most ``pool_wait`` (the limiter's
``pool_wait_seconds``) and then raises `PoolExhaustedError`, for ``failure_mode`` to
answer that call.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from revoctl.core.db._errors import is_missing_table
from revoctl.core.errors import UsageError
from revoctl.core.limits._algorithms import Algorithm, State, algorithm_for
from revoctl.core.limits.base import Op, RateLimitResult
from revoctl.core.limits.settings import RateLimitRule

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from revoctl.core.db import DatabaseManager

MIGRATION = "0003"
"""The revision that creates ``rate_limit_state``."""
TABLE = "rate_limit_state"
SWEEP_EVERY = 1000
"""Decisions between two deletions of rows whose state ran out."""
SWEEP_BATCH = 500

_NOW = {
    "postgresql": "EXTRACT(EPOCH FROM clock_timestamp())::float8",
    "sqlite": "(julianday('now') - 2440587.5) * 86400.0",
}
"""The database server's clock in epoch seconds."""


def _not_migrated() -> UsageError:
    return UsageError(
        f"the {TABLE} table is missing: the database is not migrated (run 'revoctl db migrate')"
    )


class SqlLimitStore:
    """Counters in the database behind ``db`` (SQLite or PostgreSQL); a call waits at
    most ``pool_wait`` seconds for a free pooled connection (None: ``pool_timeout``)."""

    kind = "sql"
    remote = True

    def __init__(self, db: DatabaseManager, *, pool_wait: float | None = None) -> None:
        self.db = db
        self.pool_wait = pool_wait
        now = _NOW[db.backend]
        self._lock = (
            f"INSERT INTO {TABLE} (rule, key, algorithm, state, expires_at) "
            "VALUES (:rule, :key, :algorithm, NULL, 0) "
            f"ON CONFLICT (rule, key) DO UPDATE SET expires_at = {TABLE}.expires_at "
            f"RETURNING algorithm, state, {now}"
        )
        self._read = (
            f"SELECT algorithm, state, {now} FROM {TABLE} WHERE rule = :rule AND key = :key"
        )
        self._write = (
            f"UPDATE {TABLE} SET algorithm = :algorithm, state = :state, expires_at = :expires_at "
            "WHERE rule = :rule AND key = :key"
        )
        self._keys = (
            f"SELECT key FROM {TABLE} WHERE rule = :rule AND algorithm = :algorithm "
            f"AND expires_at > {now} ORDER BY key"
        )
        self._sweep = (
            f"DELETE FROM {TABLE} WHERE (rule, key) IN "
            f"(SELECT rule, key FROM {TABLE} WHERE expires_at <= {now} LIMIT {SWEEP_BATCH})"
        )
        self._now = f"SELECT {now}"
        self._algorithms: dict[str, tuple[RateLimitRule, Algorithm]] = {}
        self._decisions = 0

    def describe(self) -> str:
        return f"{self.db.backend} {self.db.describe_url()}"

    def _algorithm(self, rule: RateLimitRule) -> Algorithm:
        cached = self._algorithms.get(rule.name)
        if cached is None or cached[0] is not rule:
            cached = self._algorithms[rule.name] = (rule, algorithm_for(rule))
        return cached[1]

    async def apply(self, rule: RateLimitRule, key: str, op: Op, weight: int) -> RateLimitResult:
        from sqlalchemy import text

        algorithm = self._algorithm(rule)
        names = {"rule": rule.name, "key": key, "algorithm": rule.algorithm.value}

        async def decide(session: AsyncSession) -> RateLimitResult:
            statement = self._read if op == "peek" else self._lock
            row = (await session.execute(text(statement), names)).first()
            state: State | None = None
            if row is None:  # a peek at a key never written
                now = float((await session.execute(text(self._now))).scalar_one())
            else:
                stored_algorithm, stored, now = row[0], row[1], float(row[2])
                if stored is not None and stored_algorithm == rule.algorithm.value:
                    state = tuple(json.loads(stored))
            new, result = algorithm.apply(state, now, op, weight)
            if new is not None:
                await session.execute(
                    text(self._write),
                    {**names, "state": json.dumps(new), "expires_at": now + result.reset_after},
                )
            return result

        result: RateLimitResult = await self._run(decide)
        if op != "peek":
            self._decisions += 1
            if self._decisions % SWEEP_EVERY == 0:
                await self._run(self._delete_expired)
        return result

    async def _delete_expired(self, session: AsyncSession) -> int:
        from sqlalchemy import text

        return int(getattr(await session.execute(text(self._sweep)), "rowcount", 0) or 0)

    async def _run(self, fn: Any) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            await self.db.ensure_schema()  # the embedded SQLite database: created on first use
            return await self.db.run_transaction(fn, pool_wait=self.pool_wait)
        except SQLAlchemyError as exc:
            if is_missing_table(exc):
                raise _not_migrated() from None
            raise

    async def keys(self, rule: RateLimitRule) -> list[str]:
        from sqlalchemy import text

        async def select(session: AsyncSession) -> list[str]:
            rows = await session.execute(
                text(self._keys), {"rule": rule.name, "algorithm": rule.algorithm.value}
            )
            return [str(row[0]) for row in rows]

        result: list[str] = await self._run(select)
        return result

    async def reset(self, rule: RateLimitRule, key: str | None) -> int:
        from sqlalchemy import text

        where = "rule = :rule" + ("" if key is None else " AND key = :key")
        live = f"{where} AND expires_at > {_NOW[self.db.backend]}"

        async def delete(session: AsyncSession) -> int:
            names = {"rule": rule.name, "key": key}
            counted = (
                await session.execute(text(f"SELECT count(*) FROM {TABLE} WHERE {live}"), names)
            ).scalar_one()
            await session.execute(text(f"DELETE FROM {TABLE} WHERE {where}"), names)
            return int(counted)

        removed: int = await self._run(delete)
        return removed

    async def ping(self) -> None:
        """Reach the database on the raw driver and check that migration 0003 is applied.

        :raises BackendUnavailableError: the database cannot be reached.
        :raises UsageError: the table is not there yet.
        """
        from revoctl.core.db import REVISIONS

        applied = await self.db.applied_revisions()
        if not any(
            r in REVISIONS and REVISIONS.index(r) >= REVISIONS.index(MIGRATION) for r in applied
        ):
            raise _not_migrated()

    async def close(self) -> None:
        """Nothing of its own: the database manager is closed by its owner."""
