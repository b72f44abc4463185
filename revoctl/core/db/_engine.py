"""Building an async engine per dialect: pool options, connect timeouts, identity, PRAGMAs."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from sqlalchemy import URL, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool, StaticPool

from revoctl.config import DatabaseConfig
from revoctl.core._files import ensure_writable_dir
from revoctl.core.errors import ConfigError

APPLICATION_NAME_MAX_BYTES = 63
"""PostgreSQL truncates ``application_name`` to NAMEDATALEN - 1 bytes."""


def backend_of(url: str | URL) -> str:
    """``"sqlite"`` or ``"postgresql"``, from the URL's scheme alone (no secret needed)."""
    scheme = url.drivername if isinstance(url, URL) else url.partition(":")[0]
    return scheme.partition("+")[0]


def application_name(role: str) -> str:
    """``revoctl:<host>:<pid>:<role>``, cut to the 63 bytes PostgreSQL keeps."""
    name = f"revoctl:{socket.gethostname()}:{os.getpid()}:{role}"
    return name.encode()[:APPLICATION_NAME_MAX_BYTES].decode(errors="ignore")


def parse_url(url: str) -> URL:
    """The URL as SQLAlchemy reads it.

    :raises ConfigError: ``database.url`` cannot be parsed.
    """
    try:
        return make_url(url)
    except Exception:
        # The text may hold a password, so the message does not quote it.
        raise ConfigError("database.url: not a valid database URL") from None


def _sqlite_file(url: URL) -> Path | None:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def build_engine(
    url: URL,
    config: DatabaseConfig,
    role: str,
    *,
    dedicated: bool = False,
    timeout: float | None = None,
) -> AsyncEngine:
    """An engine for ``url`` with the pool and connection options its dialect supports.

    ``dedicated`` builds a `NullPool` engine: every connect is a new connection,
    outside the pool (for health checks that must not queue behind a saturated
    pool). ``timeout`` bounds each connection attempt (default ``connect_timeout``).
    """
    timeout = config.connect_timeout if timeout is None else timeout
    sqlite = backend_of(url) == "sqlite"
    options: dict[str, Any] = {"hide_parameters": True, **_pool_options(url, config, dedicated)}
    if sqlite:
        options["connect_args"] = {"timeout": timeout}
        path = _sqlite_file(url)
        if path is not None:
            ensure_writable_dir(path.parent, "SQLite database")
    else:
        options["connect_args"] = {
            "timeout": timeout,
            "server_settings": {"application_name": application_name(role)},
        }
    engine = create_async_engine(url, **options)
    if sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(timeout))
    return engine


def _pool_options(url: URL, config: DatabaseConfig, dedicated: bool) -> dict[str, Any]:
    """The pool class and its settings.

    A SQLite file gets a queue pool too (WAL lets readers share the file), but no
    pre-ping or recycling: those guard against network and server drops, which a
    local file does not have. An in-memory SQLite database exists only inside its
    one connection, so it gets a `StaticPool`.
    """
    if dedicated:
        return {"poolclass": NullPool}
    if backend_of(url) == "sqlite":
        if _sqlite_file(url) is None:
            return {"poolclass": StaticPool}
        remote: dict[str, Any] = {}
    else:
        remote = {"pool_pre_ping": config.pool_pre_ping, "pool_recycle": config.pool_recycle}
    return {
        "poolclass": AsyncAdaptedQueuePool,
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
