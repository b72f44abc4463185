"""The ``secret_audit_log`` table from the secrets' side: read rows, and the log listed.

Every read the provider answers or fails (never a cache hit: a cached value was already
read, and recorded, once) becomes one ``secret_audit_log`` row: ``action = "read"``, the
version read, the actor, the provider and the outcome in ``status``: ``ok`` or
``error`` (not found, refused, unreachable, timed out). Never the value.

The rows are written in batches off the read path (a `BatchWriter`): a read never waits
for the database, and a database away leaves rows waiting in a bounded buffer, not
failed reads. Read rows are neither ``pending`` nor ``done``, so the gateway's change
watcher (which drops cached values of changed secrets) never mistakes a read for a change.
A batch whose COMMIT answer was lost is written again: a read may then be logged twice.

`audit_entries` lists the log, writes and reads, newest first (``revoctl secrets audit``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from revoctl.core.db import DatabaseManager
    from revoctl.core.secrets._audit import ReadEvent

AUDIT_ENTRY_COLUMNS = {
    "at": "ts",
    "name": "secret_name",
    "action": "action",
    "version": "version",
    "previous_version": "previous_version",
    "actor": "actor",
    "provider": "provider",
    "outcome": "status",
}
"""The keys of one `audit_entries` entry (``secrets audit --json``), in table order, and the
``secret_audit_log`` column each comes from."""
AUDIT_ENTRY_KEYS = tuple(AUDIT_ENTRY_COLUMNS)

OUTCOMES = {"done": "ok"}
"""``outcome`` from a row's ``status``: a completed change is ``ok`` like a read that was;
``error`` (a failed read) and ``pending`` (a change whose process died mid-way) stay."""


class SqlReadAuditSink:
    """Inserts read rows into ``secret_audit_log`` through the database reached by ``db()``
    (on first write, so a process that reads nothing never opens the database)."""

    def __init__(self, db: Callable[[], DatabaseManager]) -> None:
        self._db = db

    async def __call__(self, events: Sequence[ReadEvent]) -> None:
        from sqlalchemy import insert

        from revoctl.core.db._errors import refused_rows
        from revoctl.core.db.models import SecretAuditLog

        rows = [{**asdict(event), "action": "read", "previous_version": None} for event in events]
        with refused_rows():
            await self._db().transaction(
                lambda session: session.execute(insert(SecretAuditLog), rows)
            )


async def audit_entries(
    db: DatabaseManager,
    *,
    name: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The audit log (writes and reads), newest first: of ``name`` only, from ``since`` on,
    at most ``limit`` entries; each a dict of `AUDIT_ENTRY_KEYS` (``at`` a datetime,
    ``action`` one of ``read``, ``set``, ``rotate``; ``outcome`` ``ok``, ``error`` or
    ``pending``).

    :raises UsageError: the table is missing (the database is not migrated).
    :raises BackendUnavailableError: the database cannot be reached.
    """
    from sqlalchemy import select

    from revoctl.core.db.models import SecretAuditLog

    columns = [getattr(SecretAuditLog, column) for column in AUDIT_ENTRY_COLUMNS.values()]
    query = select(*columns).order_by(SecretAuditLog.ts.desc(), SecretAuditLog.id.desc())
    if name is not None:
        query = query.where(SecretAuditLog.secret_name == name)
    if since is not None:
        query = query.where(SecretAuditLog.ts >= since)

    async def read(session: AsyncSession) -> list[dict[str, Any]]:
        found = await session.execute(query.limit(limit))
        entries = [dict(zip(AUDIT_ENTRY_KEYS, row, strict=True)) for row in found.all()]
        for entry in entries:
            entry["outcome"] = OUTCOMES.get(entry["outcome"], entry["outcome"])
        return entries

    return await db.transaction(read)
