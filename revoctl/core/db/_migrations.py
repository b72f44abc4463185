"""Alembic, driven from code: the migrations ship inside the package, no alembic.ini.

Every function takes a database manager (`Migratable`: what of `DatabaseManager` they
use; its pool and retries are used; it is the caller's to open and close). Online runs
hand Alembic a live connection through ``Config.attributes``, so they work inside a
running event loop; see ``migrations/env.py``. Online runs take turns across processes:
an advisory lock on PostgreSQL, a lock file beside a SQLite database; the later runs
find the revisions applied and do nothing. `ensure_schema` brings an embedded SQLite
database up to date on its first use; it runs before a process's first transaction, so
Alembic (0.15 s) is imported by the functions that run it, not with this module.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import filelock

from revoctl.core._paths import ensure_writable_dir, holding
from revoctl.core.db._errors import is_connection_error
from revoctl.core.db._revisions import migration_status
from revoctl.core.db._url import DatabaseUrl, backend_of
from revoctl.core.db.settings import DatabaseConfig
from revoctl.core.errors import NotFoundError, RevoctlError, UsageError, first_line

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection

logger = logging.getLogger("revoctl.db")

SCRIPT_LOCATION = "revoctl.core.db:migrations"
MIGRATION_LOCK_KEY = int.from_bytes(b"revoctl", "big")
"""PostgreSQL advisory lock taken by every online migration, so that replicas running
``db migrate`` at once take turns: the later ones find the revisions applied."""
SQLITE_LOCK_SUFFIX = ".migrate.lock"
"""SQLite has no advisory lock, and Alembic runs its DDL outside one transaction: every
online migration of a SQLite file holds the lock file beside it (``revoctl.db.migrate.lock``),
so processes that first use a new database together take turns the same way."""
SQLITE_LOCK_SECONDS = 120.0
"""How long a migration waits for another process's migration of the same SQLite file."""


class Migratable(Protocol):
    """What the migrations use of a `DatabaseManager`."""

    @property
    def config(self) -> DatabaseConfig: ...

    @property
    def backend(self) -> str: ...

    async def url(self) -> DatabaseUrl: ...

    async def applied_revisions(self) -> tuple[str, ...]: ...

    def connection(
        self, *, pool_wait: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[AsyncConnection]: ...


def alembic_config(**attributes: Any) -> Config:
    """An Alembic `Config` for the packaged migrations; ``attributes`` reach ``env.py``."""
    from alembic.config import Config

    output_buffer = attributes.pop("output_buffer", None)
    config = Config(output_buffer=output_buffer)
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes.update(attributes)
    return config


@functools.cache
def script_directory() -> ScriptDirectory:
    """The packaged revisions (read once per process)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def heads() -> list[str]:
    """The newest revision(s) shipped with this version of revoctl."""
    return list(script_directory().get_heads())


def current_revisions(connection: Connection) -> tuple[str, ...]:
    """The revision(s) recorded in the database's ``alembic_version`` table."""
    from alembic.runtime.migration import MigrationContext

    return tuple(MigrationContext.configure(connection).get_current_heads())


async def ensure_schema(db: Migratable) -> None:
    """Bring an embedded SQLite database up to date.

    A new user's first ``secrets set`` or rate-limit check finds the tables there.
    Processes that first use a new database together take turns (the lock file beside
    it): one migrates, the others find it done. PostgreSQL is left alone: its migrations
    stay an explicit ``revoctl db migrate`` (run by one deploy step, with the advisory
    lock), and a missing table there is reported as "not migrated".

    :raises BackendUnavailableError: the database cannot be reached.
    """
    if db.backend != "sqlite":
        return
    if migration_status(await db.applied_revisions())["pending"]:
        done = await upgrade(db, "head")
        logger.info("migrated the SQLite database to %s (%s)", done["to"], done["applied"])


async def upgrade(db: Migratable, revision: str = "head", *, sql: bool = False) -> dict[str, Any]:
    """Apply revisions up to ``revision``; with ``sql``, return the SQL instead of running it.

    Returns ``{"from", "to", "applied"}`` or, with ``sql``, ``{"from", "to", "sql"}``.

    :raises NotFoundError: ``revision`` is unknown.
    :raises UsageError: Alembic refused the request.
    :raises BackendUnavailableError: the database cannot be reached.
    """
    if sql:
        return _offline_upgrade(db.config, revision)
    before, after, applied = await _run(db, "upgrade", revision)
    return {"from": _one(before), "to": _one(after), "applied": applied}


async def downgrade(db: Migratable, revision: str) -> dict[str, Any]:
    """Revert revisions down to ``revision`` (``base`` reverts them all, ``-1`` one).

    Returns ``{"from", "to", "reverted"}``.

    :raises NotFoundError: ``revision`` is unknown.
    :raises UsageError: ``revision`` is not below the current one.
    :raises BackendUnavailableError: the database cannot be reached.
    """
    before, after, reverted = await _run(db, "downgrade", revision)
    return {"from": _one(before), "to": _one(after), "reverted": reverted}


async def current(db: Migratable) -> dict[str, Any]:
    """``{"current", "head", "pending"}``: the applied revision, the newest shipped one, the gap.

    :raises BackendUnavailableError: the database cannot be reached.
    """
    return migration_status(await db.applied_revisions())


async def history(db: Migratable) -> list[dict[str, Any]]:
    """Every shipped revision, newest first, marked applied or not.

    :raises BackendUnavailableError: the database cannot be reached.
    """
    revisions = await db.applied_revisions()
    scripts = script_directory()
    with _alembic_errors(",".join(revisions)):
        applied = (
            {rev.revision for rev in scripts.iterate_revisions(revisions, "base") if rev}
            if revisions
            else set()
        )
    return [
        {
            "revision": script.revision,
            "down_revision": script.down_revision,
            "description": script.doc,
            "head": script.is_head,
            "current": script.revision in revisions,
            "applied": script.revision in applied,
        }
        for script in scripts.walk_revisions()
    ]


def _one(revisions: Sequence[str]) -> str | None:
    """The history is linear, so there is at most one; several are shown comma-joined."""
    return ",".join(revisions) or None


async def _run(
    db: Migratable, step: Literal["upgrade", "downgrade"], revision: str
) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
    """Run Alembic's ``step`` command on one connection; returns (before, after, revisions
    stepped)."""
    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    alembic_command: Callable[[Config, str], None] = getattr(command, step)
    _require(revision)
    stepped: list[str] = []

    def on_version_apply(*, step: Any, **_: Any) -> None:
        stepped.append(step.up_revision_id)

    def run(connection: Connection) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if connection.dialect.name == "postgresql":
            # Held until the commit below; a SQLite file is held by `_sqlite_turn`.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        before = current_revisions(connection)
        config = alembic_config(connection=connection, on_version_apply=on_version_apply)
        with _alembic_errors(revision):
            alembic_command(config, revision)
        return before, current_revisions(connection)

    async with _sqlite_turn(db), db.connection() as conn:
        try:
            before, after = await conn.run_sync(run)
        except SQLAlchemyError as exc:
            if is_connection_error(exc):
                raise  # the connection's own translation says the database is unreachable
            reason = first_line(getattr(exc, "orig", None) or exc)
            raise RevoctlError(f"migration to {revision!r} failed: {reason}") from exc
        # Alembic leaves SQLite's DDL to autocommit, but SQLAlchemy autobegins: commit it.
        await conn.commit()
    return before, after, stepped


@contextlib.asynccontextmanager
async def _sqlite_turn(db: Migratable) -> AsyncIterator[None]:
    """Hold the SQLite file's migration lock (a no-op for PostgreSQL and in-memory SQLite)."""
    path = (await db.url()).sqlite_path
    if path is None:
        yield
        return
    ensure_writable_dir(path.parent, "SQLite database")
    lock = filelock.FileLock(f"{path}{SQLITE_LOCK_SUFFIX}", mode=0o600)
    busy = f"another process is migrating the SQLite database {path}"
    async with holding(lock, timeout=SQLITE_LOCK_SECONDS, busy=busy):
        yield


def _offline_upgrade(config: DatabaseConfig, revision: str) -> dict[str, Any]:
    """``--sql``: the dialect comes from the URL's scheme, so nothing connects or resolves."""
    from alembic import command

    _require(revision)
    buffer = io.StringIO()
    alembic = alembic_config(dialect_name=backend_of(config.url), output_buffer=buffer)
    with _alembic_errors(revision):
        command.upgrade(alembic, revision, sql=True)
    start, _, end = revision.rpartition(":")
    return {"from": start or None, "to": end, "sql": buffer.getvalue()}


def _require(revision: str) -> None:
    parts = revision.split(":")
    if len(parts) > 2 or not all(part.strip() for part in parts):  # blank, "a:", ":b", "a::b"
        raise UsageError(
            "a revision is required: an id, head, base, or a step like -1 (--sql: FROM:TO)"
        )


@contextlib.contextmanager
def _alembic_errors(revision: str) -> Iterator[None]:
    """Alembic's errors as revoctl's: an unknown revision is not found, the rest are usage."""
    from alembic.script.revision import RevisionError
    from alembic.util.exc import CommandError

    try:
        yield
    except (CommandError, RevisionError) as exc:
        message = str(exc)
        if "Can't locate revision" in message or "No such revision" in message:
            raise NotFoundError(f"unknown revision {revision!r}: {message}") from exc
        raise UsageError(f"migration refused: {message}") from exc
