"""`SqlBreakerStateStore`: the shared part in the database (migration 0005).

``circuit_breaker_state`` holds one row per breaker, ``circuit_breaker_events`` the
transitions, ``circuit_breaker_processes`` each process's last report with the time
it expires. A compare-and-set is one transaction: an ``UPDATE ... WHERE version = v``
(or an ``INSERT ... ON CONFLICT DO NOTHING`` for a breaker's first record) and, when
it changed a row, the transition's ``INSERT``. Concurrent writers to one row queue on
its lock (PostgreSQL) or the file's write lock (SQLite); the loser changes nothing and
reads the winner's row. Times come from the database's clock. Processes poll: SQL has
no push. The pool is the process's, shared with everything else: a call waits at most
`STORE_POOL_WAIT` for a free connection, not ``pool_timeout``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from revoctl.core.breakers.base import (
    STORE_POOL_WAIT,
    ProcessReport,
    SharedState,
    Snapshot,
    Transition,
    Written,
)
from revoctl.core.db._errors import is_missing_table
from revoctl.core.errors import UsageError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from revoctl.core.db import DatabaseManager

T = TypeVar("T")

STATE = "circuit_breaker_state"
EVENTS = "circuit_breaker_events"
PROCESSES = "circuit_breaker_processes"
COLUMNS = (
    "name",
    "state",
    "version",
    "generation",
    "opened_at",
    "until",
    "reason",
    "actor",
    "episode",
    "trials_granted",
    "trial_successes",
    "lease_until",
    "changed_at",
)
REASON_LENGTH = 500

_NOW = {
    "postgresql": "EXTRACT(EPOCH FROM clock_timestamp())::float8",
    "sqlite": "(julianday('now') - 2440587.5) * 86400.0",
}
"""The database server's clock in epoch seconds."""

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM {STATE}"
_INSERT = (
    f"INSERT INTO {STATE} ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in COLUMNS)}) ON CONFLICT (name) DO NOTHING"
)
_UPDATE = (
    f"UPDATE {STATE} SET {', '.join(f'{c} = :{c}' for c in COLUMNS if c != 'name')} "
    "WHERE name = :name AND version = :expected"
)
_EVENT = (
    f"INSERT INTO {EVENTS} (ts, name, from_state, to_state, cause, actor, process, scope) "
    "VALUES (:ts, :name, :from_state, :to_state, :cause, :actor, :process, :scope)"
)
_TRIM = (
    f"DELETE FROM {EVENTS} WHERE name = :name AND id <= "
    f"(SELECT id FROM {EVENTS} WHERE name = :name ORDER BY id DESC LIMIT 1 OFFSET :keep)"
)
_HISTORY = (
    f"SELECT ts, name, from_state, to_state, cause, actor, process, scope FROM {EVENTS} "
    "WHERE name = :name ORDER BY id DESC LIMIT :limit"
)
_REPORT = (
    f"INSERT INTO {PROCESSES} (process, role, report, reported_at, expires_at) "
    "VALUES (:process, :role, :report, :now, :expires_at) ON CONFLICT (process) DO UPDATE SET "
    "role = excluded.role, report = excluded.report, reported_at = excluded.reported_at, "
    "expires_at = excluded.expires_at"
)
_SWEEP = f"DELETE FROM {PROCESSES} WHERE expires_at < :now"
_FLEET = f"SELECT report, reported_at FROM {PROCESSES} WHERE expires_at >= {{now}} ORDER BY process"
"""``{now}`` is the database's clock (`_NOW`): the read takes no parameters."""


class SqlBreakerStateStore:
    """The shared part in the database behind ``db()`` (SQLite or PostgreSQL)."""

    kind = "sql"

    def __init__(self, db: Callable[[], DatabaseManager], *, history_limit: int = 1000) -> None:
        self._db = db
        self.history_limit = history_limit

    def describe(self) -> str:
        db = self._db()
        return f"sql {db.describe_url()}"

    async def read(self) -> Snapshot:
        now, rows = await self._rows(_SELECT)
        return Snapshot(now, {row["name"]: _record(row) for row in rows})

    async def compare_and_set(self, record: SharedState, transition: Transition | None) -> Written:
        from sqlalchemy import text

        values = _columns(record)

        async def attempt(session: AsyncSession) -> Written:
            now = await self._now(session)
            if record.version == 1:
                result = await session.execute(text(_INSERT), values)
            else:
                result = await session.execute(
                    text(_UPDATE), {**values, "expected": record.version - 1}
                )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                found = (
                    (await session.execute(text(_SELECT + " WHERE name = :name"), values))
                    .mappings()
                    .first()
                )
                return Written(False, _record(found) if found else SharedState(record.name), now)
            if transition is not None:
                await self._append(session, transition, now)
            return Written(True, record, now)

        return await self._transaction(attempt)

    async def append_history(self, transition: Transition) -> None:
        async def attempt(session: AsyncSession) -> None:
            await self._append(session, transition, await self._now(session))

        await self._transaction(attempt)

    async def _append(self, session: AsyncSession, transition: Transition, now: float) -> None:
        from sqlalchemy import bindparam, text

        from revoctl.core.db.models import UTCDateTime

        await session.execute(
            text(_EVENT).bindparams(bindparam("ts", type_=UTCDateTime())),
            {
                "ts": datetime.fromtimestamp(now, UTC),
                "name": transition.name,
                "from_state": transition.from_state,
                "to_state": transition.to_state,
                "cause": transition.cause[:REASON_LENGTH],
                "actor": transition.actor,
                "process": transition.process,
                "scope": transition.scope,
            },
        )
        await session.execute(text(_TRIM), {"name": transition.name, "keep": self.history_limit})

    async def history(self, name: str, limit: int) -> list[Transition]:
        from sqlalchemy import text

        from revoctl.core.db.models import UTCDateTime

        db = self._db()
        query = text(_HISTORY).columns(ts=UTCDateTime())
        try:
            async with db.connection(pool_wait=STORE_POOL_WAIT) as conn:
                rows = (await conn.execute(query, {"name": name, "limit": limit})).mappings().all()
        except Exception as exc:
            if not _nothing_written(db, exc):
                raise
            rows = []
        return [
            Transition(
                row["name"],
                row["from_state"],
                row["to_state"],
                row["cause"],
                row["process"],
                row["scope"],
                row["actor"],
                row["ts"].timestamp(),
            )
            for row in rows
        ]

    async def report(self, report: ProcessReport, ttl: float) -> None:
        from sqlalchemy import text

        async def attempt(session: AsyncSession) -> None:
            now = await self._now(session)
            await session.execute(
                text(_REPORT),
                {
                    "process": report.process,
                    "role": report.role,
                    "report": report.to_json(),
                    "now": now,
                    "expires_at": now + ttl,
                },
            )
            await session.execute(text(_SWEEP), {"now": now})

        await self._transaction(attempt)

    async def fleet(self) -> tuple[float, list[ProcessReport]]:
        now, rows = await self._rows(_FLEET)
        return now, [ProcessReport.from_json(row["report"], row["reported_at"]) for row in rows]

    def changes(self) -> AsyncIterator[str] | None:
        """None: SQL cannot push; processes poll."""
        return None

    async def close(self) -> None:
        """The database manager is the composition's to close."""

    async def _rows(self, query: str) -> tuple[float, list[dict[str, Any]]]:
        """The database's clock and the rows of ``query`` (its ``{now}`` is that clock).

        A process that has not built its pool reads them without SQLAlchemy
        (`DatabaseManager.read`): ``breakers status`` and ``health`` stay fast.
        """
        db = self._db()
        now = _NOW[db.backend]
        try:
            clock, rows = await db.read(
                f"SELECT {now} AS now", query.format(now=now), pool_wait=STORE_POOL_WAIT
            )
        except Exception as exc:
            if not _nothing_written(db, exc):
                raise
            [clock], rows = await db.read(f"SELECT {now} AS now", pool_wait=STORE_POOL_WAIT), []
        return float(clock[0]["now"]), rows

    async def _transaction(self, attempt: Callable[[AsyncSession], Awaitable[T]]) -> T:
        db = self._db()
        await db.ensure_schema()  # SQLite is migrated before its first write
        with _not_migrated_is_usage():
            return await db.run_transaction(attempt, pool_wait=STORE_POOL_WAIT)

    async def _now(self, session: AsyncSession) -> float:
        from sqlalchemy import text

        value = (await session.execute(text("SELECT " + _NOW[self._db().backend]))).scalar_one()
        return float(value)


def _nothing_written(db: DatabaseManager, exc: Exception) -> bool:
    """A read found no table on SQLite, which is migrated before its first write
    (`DatabaseManager.ensure_schema`): nothing was written yet. On PostgreSQL a missing
    table means ``revoctl db migrate`` has not run.

    :raises UsageError: a table is missing on PostgreSQL.
    """
    if not is_missing_table(exc):
        return False
    if db.backend != "sqlite":
        raise _not_migrated() from None
    return True


def _not_migrated() -> UsageError:
    return UsageError(
        f"the {STATE} table is missing: the database is not migrated (run 'revoctl db migrate')"
    )


@contextlib.contextmanager
def _not_migrated_is_usage() -> Iterator[None]:
    """A missing table means ``revoctl db migrate`` has not run: say so, not the SQL."""
    try:
        yield
    except Exception as exc:
        if is_missing_table(exc):
            raise _not_migrated() from None
        raise


def _columns(record: SharedState) -> dict[str, Any]:
    values = {column: getattr(record, column) for column in COLUMNS}
    if record.reason is not None:
        values["reason"] = record.reason[:REASON_LENGTH]
    return values


def _record(row: Mapping[Any, Any]) -> SharedState:
    return SharedState(**{column: row[column] for column in COLUMNS})
