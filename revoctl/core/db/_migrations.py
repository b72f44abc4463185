"""Alembic, driven from code: the migrations ship inside the package, no alembic.ini.

Every function takes a `DatabaseManager` (its pool and retries are used) or a
`DatabaseConfig` (a manager is opened for the call). Online runs hand Alembic a
live connection through ``Config.attributes``, so they work inside a running
event loop; see ``migrations/env.py``. Online runs take turns across processes: an
advisory lock on PostgreSQL, a lock file beside a SQLite database; the later runs
find the revisions applied and do nothing.
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import filelock
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util.exc import CommandError
from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from revoctl.core._paths import ensure_writable_dir, holding
from revoctl.core.db._errors import is_connection_error
from revoctl.core.db._manager import DatabaseManager
from revoctl.core.db._url import backend_of
from revoctl.core.db.settings import DatabaseConfig
from revoctl.core.errors import NotFoundError, RevoctlError, UsageError

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

Target = DatabaseManager | DatabaseConfig


def alembic_config(**attributes: Any) -> Config:
    """An Alembic `Config` for the packaged migrations; ``attributes`` reach ``env.py``."""
    output_buffer = attributes.pop("output_buffer", None)
    config = Config(output_buffer=output_buffer)
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes.update(attributes)
    return config


@functools.cache
def script_directory() -> ScriptDirectory:
    """The packaged revisions (read once per process)."""
    return ScriptDirectory.from_config(alembic_config())


def heads() -> list[str]:
    """The newest revision(s) shipped with this version of revoctl."""
    return list(script_directory().get_heads())


def current_revisions(connection: Connection) -> tuple[str, ...]:
    """The revision(s) recorded in the database's ``alembic_version`` table."""
    return tuple(MigrationContext.configure(connection).get_current_heads())


async def upgrade(target: Target, revision: str = "head", *, sql: bool = False) -> dict[str, Any]:
    """Apply revisions up to ``revision``; with ``sql``, return the SQL instead of running it.

    Returns ``{"from", "to", "applied"}`` or, with ``sql``, ``{"from", "to", "sql"}``.

    :raises NotFoundError: ``revision`` is unknown.
    :raises UsageError: Alembic refused the request.
    :raises BackendUnavailableError: the database cannot be reached.
    """
    if sql:
        return _offline_upgrade(target, revision)
    before, after, applied = await _run(target, command.upgrade, revision)
    return {"from": _one(before), "to": _one(after), "applied": applied}


async def downgrade(target: Target, revision: str) -> dict[str, Any]:
    """Revert revisions down to ``revision`` (``base`` reverts them all, ``-1`` one).

    Returns ``{"from", "to", "reverted"}``.

    :raises NotFoundError: ``revision`` is unknown.
    :raises UsageError: ``revision`` is not below the current one.
    :raises BackendUnavailableError: the database cannot be reached.
    """
    before, after, reverted = await _run(target, command.downgrade, revision)
    return {"from": _one(before), "to": _one(after), "reverted": reverted}


async def current(target: Target) -> dict[str, Any]:
    """``{"current", "head", "pending"}``: the applied revision, the newest shipped one, the gap.

    :raises BackendUnavailableError: the database cannot be reached.
    """
    async with _managed(target) as manager:
        return await manager.migration_state()


async def history(target: Target) -> list[dict[str, Any]]:
    """Every shipped revision, newest first, marked applied or not.

    :raises BackendUnavailableError: the database cannot be reached.
    """
    async with _managed(target) as manager:
        revisions = await manager.applied_revisions()
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


@contextlib.asynccontextmanager
async def _managed(target: Target) -> AsyncIterator[DatabaseManager]:
    if isinstance(target, DatabaseManager):
        yield target
        return
    async with DatabaseManager(target, role="migrate") as manager:
        yield manager


async def _run(
    target: Target, alembic_command: Callable[[Config, str], None], revision: str
) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
    """Run an Alembic command on one connection; returns (before, after, revisions stepped)."""
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

    async with _managed(target) as manager, _sqlite_turn(manager), manager.connection() as conn:
        try:
            before, after = await conn.run_sync(run)
        except SQLAlchemyError as exc:
            if is_connection_error(exc):
                raise  # the connection's own translation says the database is unreachable
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise RevoctlError(f"migration to {revision!r} failed: {reason}") from exc
        # Alembic leaves SQLite's DDL to autocommit, but SQLAlchemy autobegins: commit it.
        await conn.commit()
    return before, after, stepped


@contextlib.asynccontextmanager
async def _sqlite_turn(manager: DatabaseManager) -> AsyncIterator[None]:
    """Hold the SQLite file's migration lock (a no-op for PostgreSQL and in-memory SQLite)."""
    path = (await manager.url()).sqlite_path
    if path is None:
        yield
        return
    ensure_writable_dir(path.parent, "SQLite database")
    lock = filelock.FileLock(f"{path}{SQLITE_LOCK_SUFFIX}", mode=0o600)
    busy = f"another process is migrating the SQLite database {path}"
    async with holding(lock, timeout=SQLITE_LOCK_SECONDS, busy=busy):
        yield


def _offline_upgrade(target: Target, revision: str) -> dict[str, Any]:
    """``--sql``: the dialect comes from the URL's scheme, so nothing connects or resolves."""
    _require(revision)
    config = target.config if isinstance(target, DatabaseManager) else target
    buffer = io.StringIO()
    alembic = alembic_config(dialect_name=backend_of(config.url), output_buffer=buffer)
    with _alembic_errors(revision):
        command.upgrade(alembic, revision, sql=True)
    start, _, end = revision.rpartition(":")
    return {"from": start or None, "to": end, "sql": buffer.getvalue()}


def _require(revision: str) -> None:
    if not revision.strip():
        raise UsageError("a revision is required: an id, head, base, or a step like -1")


@contextlib.contextmanager
def _alembic_errors(revision: str) -> Iterator[None]:
    """Alembic's errors as revoctl's: an unknown revision is not found, the rest are usage."""
    try:
        yield
    except (CommandError, RevisionError) as exc:
        message = str(exc)
        if "Can't locate revision" in message or "No such revision" in message:
            raise NotFoundError(f"unknown revision {revision!r}: {message}") from exc
        raise UsageError(f"migration refused: {message}") from exc
