"""Alembic environment for revoctl's migrations.

`revoctl.core.db._migrations` hands in a live connection through
``config.attributes["connection"]`` (from ``AsyncConnection.run_sync``), which
works from inside a running event loop. Without one (e.g. plain ``alembic``
pointed at this directory) it opens its own `NullPool` async engine on
``config.attributes["url"]`` or ``sqlalchemy.url``. ``--sql`` (offline mode)
needs only the dialect, from ``config.attributes["dialect_name"]`` or the URL,
and writes to ``Config.output_buffer`` (default stdout).
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from revoctl.core.db.models import Base

config = context.config
target_metadata = Base.metadata


def _options(dialect_name: str) -> dict[str, Any]:
    """What online and offline runs share; SQLite alters tables by copying them (batch mode)."""
    return {
        "target_metadata": target_metadata,
        "render_as_batch": dialect_name == "sqlite",
        "compare_type": True,
        "on_version_apply": config.attributes.get("on_version_apply"),
    }


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass a connection or set sqlalchemy.url")
    return str(url)


def run_migrations_offline() -> None:
    dialect_name = config.attributes.get("dialect_name") or make_url(_url()).get_backend_name()
    context.configure(
        dialect_name=dialect_name,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_options(dialect_name),
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, **_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_async_engine(_url(), poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
elif (connection := config.attributes.get("connection")) is not None:
    do_run_migrations(connection)
else:
    asyncio.run(run_async_migrations())
