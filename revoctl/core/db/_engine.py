"""Building the async engine: pool options, connect timeouts, TLS, identity, SQLite PRAGMAs.

The queue pool waits ``pool_timeout`` for a free connection, except where a caller set a
shorter wait of its own (`CHECKOUT_WAIT`, through `DatabaseManager.connection`'s
``pool_wait``): the rate limiter and the breakers, whose calls must be answered long before
30 s, share the pool with everything else.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, StaticPool

from revoctl.core._paths import create_private_file, ensure_writable_dir
from revoctl.core._process import Role, application_name
from revoctl.core.db._url import DatabaseUrl
from revoctl.core.db.settings import DatabaseConfig

CHECKOUT_WAIT: ContextVar[float | None] = ContextVar("revoctl_checkout_wait", default=None)
"""While set, the longest a checkout waits for a free connection, if under ``pool_timeout``."""


class WaitBoundedPool(AsyncAdaptedQueuePool):
    """The async queue pool, its wait for a free connection cut to `CHECKOUT_WAIT` when
    that is set and shorter (SQLAlchemy's message then names the wait that ran out)."""

    @property
    def _timeout(self) -> float:
        wait = CHECKOUT_WAIT.get()
        return self._pool_timeout if wait is None else min(wait, self._pool_timeout)

    @_timeout.setter
    def _timeout(self, value: float) -> None:
        self._pool_timeout = value

    def recreate(self) -> WaitBoundedPool:
        token = CHECKOUT_WAIT.set(None)  # the new pool gets pool_timeout, not a caller's wait
        try:
            return super().recreate()  # type: ignore[return-value]
        finally:
            CHECKOUT_WAIT.reset(token)


def build_engine(url: DatabaseUrl, config: DatabaseConfig, role: Role | str) -> AsyncEngine:
    """An engine for ``url`` with the pool and connection options its dialect supports.

    A SQLite file is created owner-only (0600) before SQLite opens it; its ``-wal``
    and ``-shm`` files take the same mode.
    """
    timeout = config.connect_timeout
    options: dict[str, Any] = {"hide_parameters": True, **_pool_options(url, config)}
    if url.backend == "sqlite":
        options["connect_args"] = {"timeout": timeout}
        path = url.sqlite_path
        if path is not None:
            ensure_writable_dir(path.parent, "SQLite database")
            create_private_file(path)
    else:
        connect_args: dict[str, Any] = {
            "timeout": timeout,
            "server_settings": {"application_name": application_name(role)},
            **url.asyncpg_options(),
        }
        tls = url.ssl_argument()
        if tls is not None:
            connect_args["ssl"] = tls
        options["connect_args"] = connect_args
    engine = create_async_engine(url.sqlalchemy_url(), **options)
    if url.backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(timeout))
    return engine


def _pool_options(url: DatabaseUrl, config: DatabaseConfig) -> dict[str, Any]:
    """The pool class and its settings.

    A SQLite file gets a queue pool too (WAL lets readers share the file), but no
    pre-ping or recycling: those guard against network and server drops, which a
    local file does not have. An in-memory SQLite database exists only inside its
    one connection, so it gets a `StaticPool`.
    """
    if url.backend == "sqlite":
        if url.sqlite_path is None:
            return {"poolclass": StaticPool}
        remote: dict[str, Any] = {}
    else:
        remote = {"pool_pre_ping": config.pool_pre_ping, "pool_recycle": config.pool_recycle}
    return {
        "poolclass": WaitBoundedPool,
        "pool_size": config.pool_size,
        "max_overflow": config.max_overflow,
        "pool_timeout": config.pool_timeout,
        **remote,
    }


def _sqlite_pragmas(timeout: float) -> Any:
    """A ``connect`` listener: WAL, a busy timeout of ``timeout`` seconds, foreign keys on."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    return on_connect
