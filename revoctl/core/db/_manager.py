"""`DatabaseManager`: one engine and pool per process, sessions with retries, health."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC
from typing import Any, TypeVar

from sqlalchemy import URL, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from revoctl.config import DatabaseConfig
from revoctl.core._lifecycle import AsyncService
from revoctl.core.db._engine import application_name, backend_of, build_engine, parse_url
from revoctl.core.db._errors import (
    is_connection_error,
    is_pool_timeout,
    is_retryable_transaction,
    translate_errors,
)
from revoctl.core.db._retry import RetryPolicy
from revoctl.core.db._stats import PoolStats
from revoctl.core.errors import ConfigError, RevoctlError
from revoctl.core.redaction import register_secret
from revoctl.core.references import PATTERN, PREFIX, referenced_names, references_secrets

T = TypeVar("T")

Resolver = Callable[[str], Awaitable[str]]


_PG_ACTIVITY = text(
    """
    SELECT application_name, state, count(*) AS count,
           min(backend_start) AS oldest_backend_start,
           EXTRACT(EPOCH FROM max(clock_timestamp() - state_change)) AS longest_state_seconds
    FROM pg_stat_activity
    WHERE datname = current_database() AND backend_type = 'client backend'
    GROUP BY application_name, state
    ORDER BY application_name, state
    """
)


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class DatabaseManager(AsyncService):
    """The process's database: one async engine and pool, built from `DatabaseConfig`.

    ``role`` tags PostgreSQL connections (``application_name`` is
    ``revoctl:<host>:<pid>:<role>``). ``resolve`` expands ``${secret:NAME}``
    references in ``config.url`` when the engine is built.

    Use as ``async with DatabaseManager(config) as db:`` or call `initialize()`
    and `close()`. Nothing connects until the first session, ping or check.

    ``retry_policy`` (``retry_attempts`` retries with backoff) and ``stats`` (pool
    counters, slow queries: statements over ``slow_query_ms``, 0 turns it off)
    are public attributes; the policy may be replaced, e.g. to tune the backoff.
    """

    def __init__(
        self,
        config: DatabaseConfig,
        *,
        role: str = "runtime",
        resolve: Resolver | None = None,
    ) -> None:
        self.config = config
        self.role = role
        self.retry_policy = RetryPolicy(config.retry_attempts)
        self.stats = PoolStats(config.pool_size, config.max_overflow)
        self._resolve = resolve
        self._url: URL | None = None
        self._engine: AsyncEngine | None = None
        self._probe_engine: AsyncEngine | None = None
        self._state = _State.NEW

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return backend_of(self.config.url)

    @property
    def engine(self) -> AsyncEngine:
        """The pooled engine (after `initialize()`)."""
        if self._engine is None:
            raise RuntimeError(f"DatabaseManager is {self._state.value}: call initialize() first")
        return self._engine

    def describe_url(self) -> str:
        """The URL without its password, fit for messages and logs."""
        url = self._url or parse_url(self.config.url)
        return url.render_as_string(hide_password=True)

    async def initialize(self) -> None:
        """Resolve the URL and build the engine; connects nothing yet.

        :raises ConfigError: the URL is invalid, or holds a secret reference and
            there is no resolver.
        """
        if self._state is _State.OPEN:
            return
        if self._state is _State.CLOSED:
            raise RuntimeError("DatabaseManager is closed")
        self._url = await self._resolved_url()
        if self._url.password:
            register_secret(str(self._url.password))
        self._engine = build_engine(self._url, self.config, self.role)
        self.stats.attach(self._engine.sync_engine, self.config.slow_query_ms)
        self._state = _State.OPEN

    async def _resolved_url(self) -> URL:
        """The configured URL with each ``${secret:NAME}`` replaced by its value.

        The URL is parsed with a plain placeholder for each reference and the values
        are then put into the parsed parts, so an ``@``, ``/``, ``:`` or ``#`` in a
        password cannot change where the URL points.
        """
        text = self.config.url
        if not references_secrets(text):
            return parse_url(text)
        if self._resolve is None:
            raise ConfigError(
                "database.url: holds a ${secret:...} reference but no secret resolver is set"
            )
        placeholders = {
            name: f"revoctlsecret{i}ref" for i, name in enumerate(referenced_names(text))
        }
        url = parse_url(PATTERN.sub(lambda match: placeholders[match.group(1)], text))
        values = {
            placeholder: await self._resolve(f"{PREFIX}{name}}}")
            for name, placeholder in placeholders.items()
        }

        def fill(part: str) -> str:
            for placeholder, value in values.items():
                part = part.replace(placeholder, value)
            return part

        def fill_optional(part: str | None) -> str | None:
            return None if part is None else fill(part)

        query = {
            key: fill(value) if isinstance(value, str) else [fill(item) for item in value]
            for key, value in url.query.items()
        }
        password = url.password
        return url.set(
            username=fill_optional(url.username),
            password=None if password is None else fill(str(password)),
            host=fill_optional(url.host),
            database=fill_optional(url.database),
            query=query,
        )

    async def close(self) -> None:
        """Close every pooled connection; the manager cannot be reopened."""
        for engine in (self._engine, self._probe_engine):
            if engine is not None:
                await engine.dispose()
        self._engine = self._probe_engine = None
        self._state = _State.CLOSED

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection, acquired with retries, returned to the pool afterwards.

        :raises BackendUnavailableError: no connection after the retries, or the
            pool stayed exhausted for ``pool_timeout``.
        """
        with self._translate_errors():
            conn = await self._acquire()
        try:
            # Only the driver's errors: an OSError of the caller's own is not an outage.
            with self._translate_errors(attempts=1, only=SQLAlchemyError):
                yield conn
        finally:
            await conn.close()

    @contextlib.asynccontextmanager
    async def get_async_session(self) -> AsyncIterator[AsyncSession]:
        """A session that commits when the block succeeds and rolls back when it raises.

        Only acquiring the connection is retried: a block that has started may have
        had effects, so it is never re-run here (see `run_transaction`).

        :raises BackendUnavailableError: the database cannot be reached.
        """
        async with self.connection() as conn:
            session = AsyncSession(bind=conn, expire_on_commit=False)
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
            finally:
                await session.close()

    async def run_transaction(self, fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``fn(session)`` in a transaction, re-running it whole on a serialization
        failure or deadlock (SQLSTATE 40001/40P01) or a locked SQLite file.

        ``fn`` must be safe to run again: it may run up to ``retry_attempts + 1`` times.

        :raises BackendUnavailableError: the database cannot be reached.
        """

        async def attempt() -> T:
            async with self.get_async_session() as session:
                return await fn(session)

        return await self.retry_policy.call(attempt, is_retryable_transaction, "transaction")

    async def ping(self) -> dict[str, Any]:
        """Connect and run ``SELECT 1``: ``{"ok", "backend", "latency_ms", "server_version"}``.

        ``latency_ms`` is the query's round trip; ``connect_ms`` the time to get a connection.

        :raises BackendUnavailableError: the database cannot be reached.
        """
        started = time.perf_counter()
        async with self.connection() as conn:
            connected = time.perf_counter()
            await conn.execute(text("SELECT 1"))
            latency = time.perf_counter() - connected
            version = conn.dialect.server_version_info or ()
        return {
            "ok": True,
            "backend": self.backend,
            "latency_ms": _ms(latency),
            "server_version": ".".join(str(part) for part in version) or None,
            "connect_ms": _ms(connected - started),
        }

    def pool_stats(self) -> dict[str, Any]:
        """This process's pool: gauges and counters (see `PoolStats`)."""
        return self.stats.snapshot(self.engine.sync_engine.pool)

    def configured_pool(self) -> dict[str, Any]:
        """The pool settings from the configuration, as ``db pool`` shows them."""
        return {
            "pool_size": self.config.pool_size,
            "max_overflow": self.config.max_overflow,
            "pool_timeout": self.config.pool_timeout,
            "pool_recycle": self.config.pool_recycle,
        }

    async def pool_report(self) -> dict[str, Any]:
        """The configured pool, this process's statistics, and the live connections.

        On PostgreSQL ``connections`` is the server's view (``pg_stat_activity``)
        of the current database grouped by ``application_name`` and ``state``, so
        the runtime's pools show up from any process. SQLite has no server and
        so no such view: ``connections`` then lists this process's pool only, and
        ``server_view`` is false.

        :raises BackendUnavailableError: the database cannot be reached.
        """
        if self.backend == "postgresql":
            async with self.connection() as conn:
                rows = (await conn.execute(_PG_ACTIVITY)).mappings().all()
            connections = [_activity_row(row) for row in rows]
        else:
            connections = self._local_connections()
        return {
            "backend": self.backend,
            "configured": self.configured_pool(),
            "pool": self.pool_stats(),
            "server_view": self.backend == "postgresql",
            "connections": connections,
        }

    async def health_check(self) -> dict[str, Any]:
        """``{"status", "latency_ms", "pool", "migrations": {"current", "head", "pending"}}``.

        The probe uses a connection of its own, outside the pool, and gives up after
        ``health_timeout``: a saturated pool or a dead server cannot make it wait for
        ``pool_timeout`` or the retries. Unhealthy when the database cannot be
        reached; degraded when migrations are pending or the pool is saturated.
        """
        # Alembic and the revision files load in a thread: loaded on the event loop they
        # would stall the checks of the other services running beside this one.
        await asyncio.to_thread(_load_migrations)
        from revoctl.core.db._migrations import current_revisions, head, migration_status

        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.config.health_timeout):
                await self.initialize()  # a URL whose secret cannot be read is unhealthy too
                with self._translate_errors(attempts=1):
                    async with self._probe().connect() as conn:
                        await conn.execute(text("SELECT 1"))
                        revisions = await conn.run_sync(current_revisions)
        except (TimeoutError, RevoctlError, SQLAlchemyError, OSError) as exc:
            error = (
                f"no answer within health_timeout={self.config.health_timeout:g}s"
                if isinstance(exc, TimeoutError)
                else str(exc)
            )
            return {
                "status": "unhealthy",
                "latency_ms": None,
                "backend": self.backend,
                "pool": self.pool_stats() if self._engine is not None else None,
                "migrations": {"current": None, "head": head(), "pending": None},
                "error": error,
            }
        migrations = migration_status(revisions)
        pool = self.pool_stats()
        degraded = pool["saturated"] or migrations["pending"] != 0
        return {
            "status": "degraded" if degraded else "healthy",
            "latency_ms": _ms(time.perf_counter() - started),
            "backend": self.backend,
            "pool": pool,
            "migrations": migrations,
        }

    async def _acquire(self) -> AsyncConnection:
        """A pooled connection; connection failures are retried with backoff, pool timeouts not."""
        engine = self.engine

        async def attempt() -> AsyncConnection:
            started = time.perf_counter()
            try:
                conn = await engine.connect()
            except Exception as exc:
                if is_pool_timeout(exc):
                    self.stats.checkout_timeouts += 1
                    self.stats.record_wait(time.perf_counter() - started)
                raise
            self.stats.record_wait(time.perf_counter() - started)
            return conn

        return await self.retry_policy.call(attempt, is_connection_error, "database connect")

    def _probe(self) -> AsyncEngine:
        """A `NullPool` engine for health checks, connect timeout capped by ``health_timeout``."""
        if self._probe_engine is None:
            self._probe_engine = build_engine(
                self._url or parse_url(self.config.url),
                self.config,
                self.role,
                dedicated=True,
                timeout=min(self.config.connect_timeout, self.config.health_timeout),
            )
        return self._probe_engine

    def _translate_errors(
        self, attempts: int | None = None, only: type[Exception] = Exception
    ) -> contextlib.AbstractContextManager[None]:
        password = self._url.password if self._url else None
        return translate_errors(
            self.describe_url(),
            attempts=self.retry_policy.retries + 1 if attempts is None else attempts,
            password=str(password) if password else None,
            only=only,
        )

    def _local_connections(self) -> list[dict[str, Any]]:
        stats = self.pool_stats()
        name = application_name(self.role)
        counts = {"checked_out": stats["checked_out"], "idle": stats["checked_in"] or 0}
        return [
            {"application_name": name, "state": state, "count": count, "revoctl": True}
            for state, count in counts.items()
            if count
        ]


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


def _load_migrations() -> None:
    from revoctl.core.db._migrations import script_directory

    script_directory()
