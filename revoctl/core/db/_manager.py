"""`DatabaseManager`: one engine and pool per process, sessions and transactions with
retries, probes, health.

SQLAlchemy is imported when the engine is built, not before: ``ping``, ``pool_report``,
``health_check`` and the reads of a process that has not built its pool (`read`) run on
the raw driver (`revoctl.core.db._probe`), so a CLI probe, a health check or a status
never pays for it. Both ways translate errors through one table
(`revoctl.core.db._errors`); the reports are built in `revoctl.core.db._reports` and the
migrations run in `revoctl.core.db._migrations`, which this module calls and which
knows the manager only by what it uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from revoctl.core._guard import NO_GUARD, CallGuard
from revoctl.core._lifecycle import AsyncService
from revoctl.core._process import Role, application_name, process_name
from revoctl.core._retry import RetryPolicy
from revoctl.core.db._errors import (
    is_connection_error,
    is_missing_table,
    is_pool_timeout,
    is_retryable_transaction,
    missing_table,
    not_migrated,
    translate_errors,
)
from revoctl.core.db._guarded import guarded_connection, with_guard
from revoctl.core.db._probe import Probe, pool_view, probe, read_rows
from revoctl.core.db._reports import (
    config_drift,
    configured_pool,
    health_report,
    local_connections,
    reported_connections,
    unhealthy_report,
)
from revoctl.core.db._stats import PoolStats
from revoctl.core.db._url import DatabaseUrl, backend_of, resolve_database_url
from revoctl.core.db.ping import ping_url
from revoctl.core.db.settings import DatabaseConfig
from revoctl.core.errors import RevoctlError
from revoctl.core.redaction import redact_url
from revoctl.core.references import SecretReader
from revoctl.core.tracing import span

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

T = TypeVar("T")

logger = logging.getLogger("revoctl.db")


class DatabaseManager(AsyncService):
    """The process's database: one async engine and pool, built from `DatabaseConfig`.

    ``role`` tags PostgreSQL connections (``application_name`` is the process name,
    ``revoctl:<host>:<pid>:<role>``, see `revoctl.core._process`); a `Role`, or any
    other word a test or a tool tags itself with. ``resolve`` reads the secrets that
    ``${secret:NAME}`` references in ``config.url`` name.

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
        role: Role | str = Role.RUNTIME,
        resolve: SecretReader | None = None,
    ) -> None:
        self.config = config
        self.role = role
        self.retry_policy = RetryPolicy(config.retry_attempts)
        self.stats = PoolStats(config.pool_size, config.max_overflow)
        self._read_secret = resolve
        self._url: DatabaseUrl | None = None
        self._engine: AsyncEngine | None = None
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()
        self.guard: CallGuard = NO_GUARD
        """Judges the pooled calls (the composition fills it with the ``database`` breaker)."""

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return backend_of(self.config.url)

    @property
    def engine(self) -> AsyncEngine:
        """The pooled engine (after `initialize()`)."""
        if self._engine is None:
            raise RuntimeError(f"DatabaseManager is {self.state.value}: call initialize() first")
        return self._engine

    def describe_url(self) -> str:
        """The URL as configured, fit for messages: references stay ``${secret:NAME}``,
        a literal password is masked."""
        return redact_url(self.config.url)

    async def url(self) -> DatabaseUrl:
        """The configured URL with its references resolved, parsed (once).

        :raises ConfigError: the URL holds a reference and there is no resolver.
        :raises RevoctlError: a referenced secret cannot be read.
        """
        if self._url is None:
            self._url = await resolve_database_url(self.config.url, self._read_secret)
        return self._url

    async def _open(self) -> None:
        """Resolve the URL and build the engine; connects nothing yet."""
        from revoctl.core.db._engine import build_engine

        self._engine = build_engine(await self.url(), self.config, self.role)
        self.stats.attach(self._engine.sync_engine, self.config.slow_query_ms)

    async def _close(self) -> None:
        """Close every pooled connection, waiting at most ``connect_timeout`` for a server
        that no longer answers (a shutdown must not hang on it): what is left is dropped."""
        engine, self._engine = self._engine, None
        if engine is None:
            return
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                await engine.dispose()
        except TimeoutError:
            logger.warning(
                "database connections not closed within %gs (the server does not answer): dropped",
                self.config.connect_timeout,
            )

    @contextlib.asynccontextmanager
    async def connection(self, *, pool_wait: float | None = None) -> AsyncIterator[AsyncConnection]:
        """A pooled connection, acquired with retries, returned to the pool afterwards.

        ``pool_wait`` bounds the wait for a free connection below ``pool_timeout``, for
        callers that must answer sooner (the rate limiter, the breakers). Under `guard`
        (`revoctl.core.db._guarded`): it may refuse the call before the pool is asked.

        :raises PoolExhaustedError: the pool stayed exhausted for ``pool_timeout`` (or
            ``pool_wait``).
        :raises BackendUnavailableError: no connection after the retries, or the guard
            refuses (`GuardOpenError`).
        """
        async with guarded_connection(self, pool_wait) as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def get_async_session(
        self, *, pool_wait: float | None = None
    ) -> AsyncIterator[AsyncSession]:
        """A session that commits when the block succeeds and rolls back when it raises.

        Only acquiring the connection is retried: a block that has started may have
        had effects, so it is never re-run here (see `transaction`). ``pool_wait``:
        as for `connection`.

        :raises PoolExhaustedError: no connection came free in time.
        :raises BackendUnavailableError: the database cannot be reached.
        """
        from sqlalchemy.ext.asyncio import AsyncSession

        with span("db.session"):
            async with self.connection(pool_wait=pool_wait) as conn:
                session = AsyncSession(bind=conn, expire_on_commit=False)
                try:
                    yield session
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
                finally:
                    await session.close()

    async def transaction(
        self, fn: Callable[[AsyncSession], Awaitable[T]], *, pool_wait: float | None = None
    ) -> T:
        """Run ``fn(session)`` in a transaction, re-running it whole on a serialization
        failure or deadlock (SQLSTATE 40001/40P01) or a locked SQLite file.

        An embedded SQLite database is brought up to date first (`ensure_schema`).
        ``fn`` must be safe to run again: it may run up to ``retry_attempts + 1`` times.
        ``pool_wait``: as for `connection`.

        :raises UsageError: a table ``fn`` uses is missing: the database is not migrated.
        :raises PoolExhaustedError: no connection came free in time.
        :raises BackendUnavailableError: the database cannot be reached.
        """
        await self.ensure_schema()

        async def attempt() -> T:
            async with self.get_async_session(pool_wait=pool_wait) as session:
                return await fn(session)

        try:
            with span("db.transaction"):
                return await self.retry_policy.call(
                    attempt, is_retryable_transaction, "transaction"
                )
        except Exception as exc:
            if is_missing_table(exc):
                raise not_migrated(missing_table(exc)) from None
            raise

    async def ping(self) -> dict[str, Any]:
        """Connect and run ``SELECT 1`` on a connection of its own:
        ``{"ok", "backend", "latency_ms", "server_version", "connect_ms"}``.

        One deadline, ``connect_timeout``, bounds the whole probe; connections refused
        or reset are retried with backoff (``retry_attempts``) inside it.

        ``latency_ms`` is the query's round trip; ``connect_ms`` the time to get a connection.

        :raises BackendUnavailableError: the database cannot be reached.
        """
        return await ping_url(
            await self.url(),
            role=self.role,
            timeout=self.config.connect_timeout,
            target=self.describe_url(),
            retry=self.retry_policy,
        )

    async def read(
        self, *queries: str, pool_wait: float | None = None
    ) -> list[list[dict[str, Any]]]:
        """The rows of parameterless read-only ``queries``, as dicts, one list per query.

        On the pool once `initialize()` has built it; before that, on one raw-driver
        connection of their own under ``connect_timeout`` (retried like `ping`), so a
        process that only reads (``breakers status``, ``health``) neither builds a pool
        nor imports SQLAlchemy. An in-memory SQLite database lives only in its pool. A
        missing table raises the driver's error (`revoctl.core.db._errors.is_missing_table`
        tells it). ``pool_wait``: as for `connection`.

        :raises BackendUnavailableError: the database cannot be reached.
        """
        url = await self.url()
        if self._engine is None and (url.backend != "sqlite" or url.sqlite_path is not None):
            return await read_rows(
                url,
                queries,
                application_name=application_name(self.role),
                timeout=self.config.connect_timeout,
                target=self.describe_url(),
                retry=self.retry_policy,
            )
        from sqlalchemy import text

        async with self.connection(pool_wait=pool_wait) as conn:
            return [
                [dict(row) for row in (await conn.execute(text(query))).mappings()]
                for query in queries
            ]

    async def ensure_schema(self) -> None:
        """Bring an embedded SQLite database up to date before its first use in this
        process (once; see `revoctl.core.db._migrations.ensure_schema`). PostgreSQL is
        left alone: its migrations stay an explicit ``revoctl db migrate``.

        :raises BackendUnavailableError: the database cannot be reached.
        """
        if self._schema_ready or self.backend != "sqlite":
            return
        async with self._schema_lock:
            if not self._schema_ready:
                from revoctl.core.db._migrations import ensure_schema

                await ensure_schema(self)
                self._schema_ready = True

    async def applied_revisions(self) -> tuple[str, ...]:
        """The revision(s) recorded in the database's ``alembic_version`` table.

        :raises BackendUnavailableError: the database cannot be reached.
        """
        return (await self._probe(self.config.connect_timeout)).revisions

    def pool_stats(self) -> dict[str, Any] | None:
        """This process's pool, gauges and counters (see `PoolStats`); None before it is built."""
        if self._engine is None:
            return None
        return self.stats.snapshot(self._engine.sync_engine.pool)

    async def pool_report(self) -> dict[str, Any]:
        """The configured pool, this process's statistics, the live connections, and every
        runtime instance's own report of its pool (``instances``, stale ones flagged).

        On PostgreSQL ``connections`` is the server's view (``pg_stat_activity``)
        of the current database grouped by ``application_name`` and ``state``, so
        the runtime's pools show up from any process. SQLite has no server, so
        ``server_view`` is false and ``connections`` is built from the instances'
        reports (and this process's own pool).

        :raises BackendUnavailableError: the database cannot be reached.
        """
        server, instances = await pool_view(
            await self.url(),
            application_name=application_name(self.role),
            timeout=self.config.connect_timeout,
            target=self.describe_url(),
        )
        if server is None:
            mine = local_connections(process_name(self.role), self.pool_stats())
            connections = [*reported_connections(instances), *mine]
        else:
            connections = server
        return {
            "backend": self.backend,
            "configured": configured_pool(self.config),
            "pool": self.pool_stats(),
            "server_view": server is not None,
            "connections": connections,
            "instances": instances,
            "config_drift": config_drift(instances),
        }

    async def health_check(self, budget: float | None = None) -> dict[str, Any]:
        """``{"status", "latency_ms", "backend", "pool", "migrations", "error"?, "reason"?}``.

        The probe uses a connection of its own, outside the pool, and gives up after
        ``health_timeout`` (or ``budget`` seconds, when less): a saturated pool or a
        dead server cannot make it wait for ``pool_timeout`` or the retries.
        Unhealthy when the database cannot be reached (or its URL's secret cannot be
        read); degraded when migrations are pending or the pool is saturated, with
        the reason in ``reason``.
        """
        timeout = min(self.config.health_timeout, budget or self.config.health_timeout)
        try:
            seen = await self._probe(timeout)
        except RevoctlError as exc:
            return with_guard(unhealthy_report(self.backend, self.pool_stats(), exc), self.guard)
        return with_guard(health_report(self.backend, self.pool_stats(), seen), self.guard)

    async def _probe(self, timeout: float, *, retry: RetryPolicy | None = None) -> Probe:
        return await probe(
            await self.url(),
            application_name=application_name(self.role),
            timeout=timeout,
            target=self.describe_url(),
            retry=retry,
        )

    async def _acquire(self, pool_wait: float | None = None) -> AsyncConnection:
        """A pooled connection; connection failures are retried with backoff, pool timeouts not.

        ``pool_wait``, when given, is the longest the pool is waited for (if under
        ``pool_timeout``)."""
        from revoctl.core.db._engine import CHECKOUT_WAIT

        engine = self.engine

        async def attempt() -> AsyncConnection:
            started = time.perf_counter()
            bound = CHECKOUT_WAIT.set(pool_wait)
            try:
                conn = await engine.connect()
            except Exception as exc:
                if is_pool_timeout(exc):
                    self.stats.record_wait(time.perf_counter() - started, timed_out=True)
                raise
            finally:
                CHECKOUT_WAIT.reset(bound)
            self.stats.record_wait(time.perf_counter() - started)
            return conn

        return await self.retry_policy.call(attempt, is_connection_error, "database connect")

    def _translate_errors(
        self, attempts: int | None = None, only: type[Exception] = Exception
    ) -> contextlib.AbstractContextManager[None]:
        return translate_errors(
            self.describe_url(),
            attempts=self.retry_policy.retries + 1 if attempts is None else attempts,
            password=self._url.password if self._url else None,
            only=only,
        )
