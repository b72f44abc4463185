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

Writes go through `DatabaseManager.transaction` (an embedded SQLite database migrated
first, retries, "not migrated" for a missing table) with statements built from the
models' tables (SQLAlchemy Core), once per dialect. The two reads ``breakers status``
and ``health`` make (`read`, `fleet`) run on the raw driver before a pool is built, so
they stay text (building them would import SQLAlchemy): ``SELECT *`` fills `SharedState`
by column name, and the fleet's read names the few columns it needs.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from revoctl.core._guard import unguarded
from revoctl.core.breakers.base import (
    STORE_POOL_WAIT,
    ProcessReport,
    SharedState,
    Snapshot,
    Transition,
    Written,
)
from revoctl.core.db._errors import is_missing_table, missing_table, not_migrated
from revoctl.core.db._sql import SERVER_CLOCK, server_clock, table, upsert

if TYPE_CHECKING:
    from sqlalchemy import Column, Executable
    from sqlalchemy.ext.asyncio import AsyncSession

    from revoctl.core.db import DatabaseManager

T = TypeVar("T")

STATE = "circuit_breaker_state"
PROCESSES = "circuit_breaker_processes"
_READ_ALL = f"SELECT * FROM {STATE}"
_FLEET = f"SELECT report, reported_at FROM {PROCESSES} WHERE expires_at >= {{now}} ORDER BY process"
"""``{now}`` is the database's clock (`SERVER_CLOCK`): the read takes no parameters."""


@dataclass(frozen=True)
class _Statements:
    """The store's pooled statements for one dialect; parameters are named after the
    columns they fill."""

    columns: tuple[Column[Any], ...]
    """``circuit_breaker_state``'s columns: `SharedState`'s fields."""
    reason: Column[Any]
    cause: Column[Any]
    now: Executable
    read_one: Executable
    insert: Executable
    """A breaker's first record; changes nothing when another process wrote it first."""
    update: Executable
    """A later record, only over version ``expected`` of the row named ``key_name``."""
    event: Executable
    trim: Executable
    """Keeps a breaker's newest ``keep`` events."""
    history: Executable
    report: Executable
    sweep: Executable
    """Forgets processes whose report expired before ``now``."""


@functools.cache
def _statements(backend: str) -> _Statements:
    from sqlalchemy import bindparam, delete, select, update

    from revoctl.core.db.models import (
        CircuitBreakerEvent,
        CircuitBreakerProcess,
        CircuitBreakerState,
    )

    state, events, processes = (
        table(CircuitBreakerState),
        table(CircuitBreakerEvent),
        table(CircuitBreakerProcess),
    )
    this_breaker = events.c.name == bindparam("name")
    newest = select(events.c.id).where(this_breaker).order_by(events.c.id.desc()).limit(1)
    report = upsert(backend, processes)
    written = [c for c in processes.c if c.name != "process"]
    return _Statements(
        columns=tuple(state.c),
        reason=state.c.reason,
        cause=events.c.cause,
        now=select(server_clock(backend)),
        read_one=select(state).where(state.c.name == bindparam("name")),
        insert=upsert(backend, state).on_conflict_do_nothing(index_elements=[state.c.name]),
        update=update(state).where(
            state.c.name == bindparam("key_name"), state.c.version == bindparam("expected")
        ),
        event=events.insert(),
        trim=delete(events).where(
            this_breaker,
            events.c.id <= newest.offset(bindparam("keep")).scalar_subquery(),
        ),
        history=select(events)
        .where(this_breaker)
        .order_by(events.c.id.desc())
        .limit(bindparam("limit")),
        report=report.on_conflict_do_update(
            index_elements=[processes.c.process],
            set_={c.name: report.excluded[c.name] for c in written},
        ),
        sweep=delete(processes).where(processes.c.expires_at < bindparam("now")),
    )


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
        now, rows = await self._rows(_READ_ALL)
        return Snapshot(now, {row["name"]: _record(row) for row in rows})

    async def compare_and_set(self, record: SharedState, transition: Transition | None) -> Written:
        sql = self._sql()
        values = {c.name: getattr(record, c.name) for c in sql.columns}
        values[sql.reason.name] = _fit(record.reason, sql.reason)

        async def attempt(session: AsyncSession) -> Written:
            now = await self._now(session)
            if record.version == 1:
                result = await session.execute(sql.insert, values)
            else:
                changed = {k: v for k, v in values.items() if k != "name"}
                result = await session.execute(
                    sql.update,
                    changed | {"key_name": record.name, "expected": record.version - 1},
                )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                found = (
                    (await session.execute(sql.read_one, {"name": record.name})).mappings().first()
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
        sql = self._sql()
        await session.execute(
            sql.event,
            {
                "ts": datetime.fromtimestamp(now, UTC),
                "name": transition.name,
                "from_state": transition.from_state,
                "to_state": transition.to_state,
                "cause": _fit(transition.cause, sql.cause),
                "actor": transition.actor,
                "process": transition.process,
                "scope": transition.scope,
            },
        )
        await session.execute(sql.trim, {"name": transition.name, "keep": self.history_limit})

    async def history(self, name: str, limit: int) -> list[Transition]:
        db = self._db()
        try:
            with unguarded():
                async with db.connection(pool_wait=STORE_POOL_WAIT) as conn:
                    result = await conn.execute(self._sql().history, {"name": name, "limit": limit})
                    rows = result.mappings().all()
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
        sql = self._sql()

        async def attempt(session: AsyncSession) -> None:
            now = await self._now(session)
            await session.execute(
                sql.report,
                {
                    "process": report.process,
                    "role": report.role,
                    "report": report.to_json(),
                    "reported_at": now,
                    "expires_at": now + ttl,
                },
            )
            await session.execute(sql.sweep, {"now": now})

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
        now = SERVER_CLOCK[db.backend]
        try:
            with unguarded():
                clock, rows = await db.read(
                    f"SELECT {now} AS now", query.format(now=now), pool_wait=STORE_POOL_WAIT
                )
        except Exception as exc:
            if not _nothing_written(db, exc):
                raise
            with unguarded():
                [clock] = await db.read(f"SELECT {now} AS now", pool_wait=STORE_POOL_WAIT)
            rows = []
        return float(clock[0]["now"]), rows

    async def _transaction(self, attempt: Callable[[AsyncSession], Awaitable[T]]) -> T:
        with unguarded():  # the breakers' own traffic: a tripped `database` must not cut it
            return await self._db().transaction(attempt, pool_wait=STORE_POOL_WAIT)

    async def _now(self, session: AsyncSession) -> float:
        return float((await session.execute(self._sql().now)).scalar_one())

    def _sql(self) -> _Statements:
        return _statements(self._db().backend)


def _nothing_written(db: DatabaseManager, exc: Exception) -> bool:
    """A read found no table on SQLite, which is migrated before its first write
    (`DatabaseManager.ensure_schema`): nothing was written yet. On PostgreSQL a missing
    table means ``revoctl db migrate`` has not run.

    :raises UsageError: a table is missing on PostgreSQL.
    """
    if not is_missing_table(exc):
        return False
    if db.backend != "sqlite":
        raise not_migrated(missing_table(exc)) from None
    return True


def _fit(text: str | None, column: Column[Any]) -> str | None:
    """``text`` cut to ``column``'s length."""
    length = getattr(column.type, "length", None)
    return text[:length] if text is not None and length else text


def _record(row: Mapping[Any, Any]) -> SharedState:
    return SharedState(**{str(column): value for column, value in row.items()})
