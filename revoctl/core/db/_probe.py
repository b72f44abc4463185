"""Probes on the raw driver: asyncpg or the standard sqlite3, no SQLAlchemy, no Alembic.

``db ping``, ``db pool``, every health check (the CLI's and the runtime's) and the reads
of a process whose pool is not built yet (`read_rows`) run here: each opens one connection
of its own outside any pool, under one deadline, so a saturated pool or a hung server
cannot make a probe wait, and a short-lived CLI process does not pay for importing
SQLAlchemy (0.3-0.7 s) to send ``SELECT 1``. The applied migration is read from
``alembic_version``, for the caller to compare with the shipped ones
(`revoctl.core.db._revisions`). The drivers' errors are translated by the same table as
the pool's (`revoctl.core.db._errors.translate_errors`), so both word a failure alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from revoctl.core._paths import create_private_file, ensure_writable_dir
from revoctl.core._retry import RetryPolicy
from revoctl.core.db._errors import is_transient_connect, translate_errors
from revoctl.core.db._url import DatabaseUrl
from revoctl.core.errors import BackendUnavailableError

T = TypeVar("T")

INSTANCE_STALE_SECONDS = 15.0
"""A runtime instance that has not reported for this long (three of its 5 s reports) is
flagged stale: stopped, hung, or cut off from the database."""

_INSTANCES = (
    "SELECT instance, started_at, seen_at, pool, details FROM runtime_instances ORDER BY instance"
)

_PG_ACTIVITY = """
    SELECT application_name, state, count(*) AS count,
           min(backend_start) AS oldest_backend_start,
           EXTRACT(EPOCH FROM max(clock_timestamp() - state_change)) AS longest_state_seconds
    FROM pg_stat_activity
    WHERE datname = current_database() AND backend_type = 'client backend'
    GROUP BY application_name, state
    ORDER BY application_name, state
"""


@dataclass(frozen=True)
class Probe:
    """What one probe saw."""

    backend: str
    connect_ms: float
    latency_ms: float
    server_version: str | None
    revisions: tuple[str, ...]


async def probe(
    url: DatabaseUrl,
    *,
    application_name: str,
    timeout: float,
    target: str,
    retry: RetryPolicy | None = None,
) -> Probe:
    """Connect, ``SELECT 1``, read the applied revision; all within ``timeout`` seconds.

    ``target`` names the database in messages (the URL template, password masked).
    With ``retry``, a connection that fails for a reason that may pass (refused,
    reset, the server starting) is tried again with backoff, inside the same deadline.

    :raises BackendUnavailableError: the database cannot be reached, refuses the
        connection, or does not answer within ``timeout``.
    """

    async def attempt() -> Probe:
        if url.backend == "sqlite":
            return await asyncio.to_thread(_sqlite_probe, url, timeout)
        return await _postgres_probe(url, application_name, timeout)

    return await _bounded(attempt, url, target, timeout, retry, "database probe")


async def pool_view(
    url: DatabaseUrl, *, application_name: str, timeout: float, target: str
) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """The live connections as PostgreSQL sees them (``pg_stat_activity``, grouped by
    ``application_name`` and state; None on SQLite, which has no server), and every
    runtime instance's last report of its pool (``runtime_instances``), stale ones flagged.

    :raises BackendUnavailableError: the database cannot be reached.
    """
    with translate_errors(target, attempts=1, password=url.password):
        async with _deadline(target, timeout):
            if url.backend == "sqlite":
                rows = await asyncio.to_thread(_sqlite_instances, url, timeout)
                return None, [_instance_row(*row) for row in rows]
            conn = await _pg_connect(url, application_name, timeout)
            try:
                activity = await conn.fetch(_PG_ACTIVITY)
                table = await conn.fetchval("SELECT to_regclass('runtime_instances')::text")
                reports = await conn.fetch(_INSTANCES) if table else []
            finally:
                await conn.close()
    return [_activity_row(row) for row in activity], [_instance_row(*row) for row in reports]


async def read_rows(
    url: DatabaseUrl,
    queries: tuple[str, ...],
    *,
    application_name: str,
    timeout: float,
    target: str,
    retry: RetryPolicy | None = None,
) -> list[list[dict[str, Any]]]:
    """The rows of parameterless read-only ``queries``, as dicts, one list per query, on
    one connection of their own. A missing table raises the driver's error unchanged.

    :raises BackendUnavailableError: the database cannot be reached.
    """

    async def attempt() -> list[list[dict[str, Any]]]:
        if url.backend == "sqlite":
            # Read-only: a thread that outlives the deadline changes nothing.
            return await asyncio.to_thread(_sqlite_rows, url, queries, timeout)
        conn = await _pg_connect(url, application_name, timeout)
        try:
            return [[dict(row) for row in await conn.fetch(query)] for query in queries]
        finally:
            await conn.close()

    return await _bounded(attempt, url, target, timeout, retry, "database read")


async def _bounded(
    attempt: Callable[[], Awaitable[T]],
    url: DatabaseUrl,
    target: str,
    timeout: float,
    retry: RetryPolicy | None,
    what: str,
) -> T:
    """``attempt()`` under one deadline, retried on transient connection failures when
    ``retry`` is given, its errors translated (naming how many attempts were made)."""
    attempts = 0

    async def counted() -> T:
        nonlocal attempts
        attempts += 1
        return await attempt()

    with translate_errors(target, attempts=lambda: attempts, password=url.password):
        async with _deadline(target, timeout):
            if retry is None:
                return await counted()
            return await retry.call(counted, is_transient_connect, what)


def _sqlite_rows(
    url: DatabaseUrl, queries: tuple[str, ...], timeout: float
) -> list[list[dict[str, Any]]]:
    path = url.sqlite_path
    if path is None:
        raise ValueError("an in-memory SQLite database is only on its pool")
    ensure_writable_dir(path.parent, "SQLite database")
    create_private_file(path)
    conn = sqlite3.connect(path, timeout=timeout)
    conn.row_factory = sqlite3.Row
    try:
        return [[dict(row) for row in conn.execute(query)] for query in queries]
    finally:
        conn.close()


def _sqlite_instances(url: DatabaseUrl, timeout: float) -> list[tuple[Any, ...]]:
    path = url.sqlite_path
    if path is None or not path.exists():
        return []
    conn = sqlite3.connect(path, timeout=timeout)
    try:
        return conn.execute(_INSTANCES).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def _instance_row(
    instance: str, started: Any, seen: Any, pool: Any, details: Any
) -> dict[str, Any]:
    seen_at = _utc(seen)
    age = (datetime.now(UTC) - seen_at).total_seconds()
    return {
        "instance": instance,
        "started_at": _utc(started).isoformat(),
        "seen_at": seen_at.isoformat(),
        "seconds_since_report": round(age, 3),
        "stale": age > INSTANCE_STALE_SECONDS,
        "pool": json.loads(pool) if isinstance(pool, str) else pool,
        "details": json.loads(details) if isinstance(details, str) else details,
    }


def _utc(value: Any) -> datetime:
    """A timestamp as stored: an aware datetime (PostgreSQL) or naive UTC text (SQLite)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def _postgres_probe(url: DatabaseUrl, application_name: str, timeout: float) -> Probe:
    started = time.perf_counter()
    conn = await _pg_connect(url, application_name, timeout)
    try:
        connected = time.perf_counter()
        await conn.fetchval("SELECT 1")
        latency = time.perf_counter() - connected
        version = conn.get_settings().server_version  # the handshake's: no query
        table = await conn.fetchval("SELECT to_regclass('alembic_version')::text")
        revisions: tuple[str, ...] = ()
        if table is not None:
            revisions = tuple(r[0] for r in await conn.fetch("SELECT version_num FROM " + table))
    finally:
        await conn.close()
    return Probe(
        backend="postgresql",
        connect_ms=_ms(connected - started),
        latency_ms=_ms(latency),
        server_version=version,
        revisions=revisions,
    )


async def _pg_connect(url: DatabaseUrl, application_name: str, timeout: float) -> Any:
    import asyncpg

    return await asyncpg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
        ssl=url.ssl_argument(),
        timeout=timeout,
        server_settings={"application_name": application_name},
        **url.asyncpg_options(),
    )


def _sqlite_probe(url: DatabaseUrl, timeout: float) -> Probe:
    started = time.perf_counter()
    path = url.sqlite_path
    if path is not None:
        ensure_writable_dir(path.parent, "SQLite database")
        create_private_file(path)
    conn = sqlite3.connect(path or ":memory:", timeout=timeout)
    try:
        connected = time.perf_counter()
        conn.execute("SELECT 1").fetchone()
        latency = time.perf_counter() - connected
        try:
            revisions = tuple(r[0] for r in conn.execute("SELECT version_num FROM alembic_version"))
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            revisions = ()
    finally:
        conn.close()
    return Probe(
        backend="sqlite",
        connect_ms=_ms(connected - started),
        latency_ms=_ms(latency),
        server_version=sqlite3.sqlite_version,
        revisions=revisions,
    )


@contextlib.asynccontextmanager
async def _deadline(target: str, timeout: float) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError:
        raise BackendUnavailableError(
            f"the database at {target} did not answer within {timeout:g}s"
        ) from None


def _activity_row(row: Any) -> dict[str, Any]:
    name = row["application_name"] or ""
    started = row["oldest_backend_start"]
    longest = row["longest_state_seconds"]
    return {
        "application_name": name,
        "state": row["state"],
        "count": row["count"],
        "oldest_backend_start": started.astimezone(UTC).isoformat() if started else None,
        "longest_state_seconds": round(float(longest), 3) if longest is not None else None,
        "revoctl": name.startswith("revoctl"),
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
