"""Retention: delete the append-only tables' old rows, in small batches, one process at a time.

`prune` deletes, table by table, the rows whose ``ts`` is older than the table's
``[retention]`` days (or one ``older_than`` for every table), ``batch_size`` rows per
transaction: the batch's last id (``SELECT max(id) FROM (SELECT id ... WHERE ts < cutoff
ORDER BY id LIMIT n)``), then ``DELETE ... WHERE id <= last AND ts < cutoff``, an index range
on the primary key; the same SQL on PostgreSQL and SQLite, so no statement holds its locks
for long nor writes one huge transaction. A dry run counts the rows instead.

Only one process of the fleet prunes at a time: it first takes the ``retention`` row of
``maintenance_leases`` (an upsert that succeeds only when the lease is free, lapsed or its
own; the database's clock decides), renews it between batches and releases it at the end.
A process that died holding it blocks the others for `LEASE_SECONDS` at most.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from revoctl.core._process import process_name
from revoctl.core.db.settings import RETAINED_TABLES, RetentionConfig
from revoctl.core.errors import CheckFailedError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from revoctl.core.db._manager import DatabaseManager

logger = logging.getLogger("revoctl.db")

LEASE = "retention"
LEASE_SECONDS = 300.0
"""How long a lease lasts unless renewed: a pruner renews it after every batch."""


class LeaseHeldError(CheckFailedError):
    """Another process holds the maintenance lease: it is pruning now."""


async def take_lease(
    db: DatabaseManager, holder: str, *, name: str = LEASE, seconds: float = LEASE_SECONDS
) -> str:
    """Take (or renew) the lease ``name`` for ``seconds``; returns who holds it after: ``holder``
    when taken, else the process that holds it.

    :raises UsageError: the database is not migrated.
    :raises BackendUnavailableError: the database cannot be reached.
    """
    from sqlalchemy import literal_column, or_, select

    from revoctl.core.db._sql import SERVER_CLOCK, table, upsert
    from revoctl.core.db.models import MaintenanceLease

    leases = table(MaintenanceLease)
    now: Any = literal_column(SERVER_CLOCK[db.backend])
    insert = upsert(db.backend, leases).values(name=name, holder=holder, expires_at=now + seconds)
    statement = insert.on_conflict_do_update(
        index_elements=[leases.c.name],
        set_={"holder": insert.excluded.holder, "expires_at": insert.excluded.expires_at},
        where=or_(leases.c.expires_at < now, leases.c.holder == insert.excluded.holder),
    )

    async def take(session: AsyncSession) -> str:
        await session.execute(statement)
        current = await session.scalar(select(leases.c.holder).where(leases.c.name == name))
        return str(current)

    return await db.transaction(take)


async def release_lease(db: DatabaseManager, holder: str, *, name: str = LEASE) -> None:
    """Give the lease ``name`` up, when ``holder`` still holds it.

    :raises BackendUnavailableError: the database cannot be reached.
    """
    from sqlalchemy import delete

    from revoctl.core.db._sql import table
    from revoctl.core.db.models import MaintenanceLease

    leases = table(MaintenanceLease)
    statement = delete(leases).where(leases.c.name == name, leases.c.holder == holder)
    await db.transaction(lambda session: session.execute(statement))


def cutoffs(
    config: RetentionConfig, older_than: timedelta | None, now: datetime
) -> dict[str, datetime]:
    """The moment before which each table's rows go: ``older_than`` for every table, else
    each table's days (a table kept forever, 0 days, is left out)."""
    if older_than is not None:
        return dict.fromkeys(RETAINED_TABLES, now - older_than)
    return {table: now - timedelta(days=days) for table, days in config.days().items() if days}


async def prune(
    db: DatabaseManager,
    config: RetentionConfig,
    *,
    older_than: timedelta | None = None,
    dry_run: bool = False,
    holder: str | None = None,
) -> dict[str, int]:
    """Delete each retained table's rows older than its cutoff (see `cutoffs`), in batches
    of ``batch_size``; ``{table: rows_deleted}``. A dry run counts them and deletes nothing
    (and takes no lease).

    :raises LeaseHeldError: another process is pruning.
    :raises UsageError: the database is not migrated.
    :raises BackendUnavailableError: the database cannot be reached.
    """
    limits = cutoffs(config, older_than, datetime.now(UTC))
    if dry_run:
        return {name: await _count(db, name, before) for name, before in limits.items()}
    holder = holder or process_name(db.role)
    current = await take_lease(db, holder)
    if current != holder:
        raise LeaseHeldError(f"another process is pruning (it holds the lease): {current}")
    try:
        deleted = {}
        for name, before in limits.items():
            deleted[name] = await _delete(db, name, before, config.batch_size, holder)
    finally:
        await release_lease(db, holder)
    if any(deleted.values()):
        logger.info("retention: deleted %s", deleted)
    return deleted


async def _count(db: DatabaseManager, name: str, before: datetime) -> int:
    from sqlalchemy import func, select

    ts = _table(name).c.ts
    statement = select(func.count()).where(ts < before)

    async def counted(session: AsyncSession) -> int:
        return int(await session.scalar(statement) or 0)

    return await db.transaction(counted)


async def _delete(
    db: DatabaseManager, name: str, before: datetime, batch_size: int, holder: str
) -> int:
    """Delete ``name``'s rows older than ``before``, ``batch_size`` per transaction, renewing
    the lease after each batch."""
    from sqlalchemy import delete, func, select

    rows = _table(name)
    old = rows.c.ts < before
    oldest = select(rows.c.id).where(old).order_by(rows.c.id).limit(batch_size).subquery()
    bound = select(func.max(oldest.c.id))

    async def batch(session: AsyncSession) -> int:
        # The batch's last id, then a range on the primary key: an index range scan, where
        # ``id IN (subquery)`` makes PostgreSQL scan the whole table for every batch.
        last = await session.scalar(bound)
        if last is None:
            return 0
        result: Any = await session.execute(delete(rows).where(rows.c.id <= last, old))
        return int(result.rowcount)

    total = 0
    while True:
        count = await db.transaction(batch)
        total += count
        if count < batch_size:
            return total
        current = await take_lease(db, holder)
        if current != holder:  # lapsed and taken: the other process carries on
            raise LeaseHeldError(f"the retention lease passed to {current} while pruning {name}")


def _table(name: str) -> Any:
    from revoctl.core.db._sql import table
    from revoctl.core.db.models import (
        ModelUsage,
        RateLimitLog,
        RequestLog,
        SecretAuditLog,
        SystemMetrics,
    )

    models = {
        "request_logs": RequestLog,
        "model_usage": ModelUsage,
        "rate_limit_logs": RateLimitLog,
        "secret_audit_log": SecretAuditLog,
        "system_metrics": SystemMetrics,
    }
    return table(models[name])


async def apply_retention(db: DatabaseManager, config: RetentionConfig) -> dict[str, int] | None:
    """`prune` by the configured days, for the gateway's timer: None when another process
    holds the lease (it is pruning; this one's turn comes at the next period).

    :raises UsageError: the database is not migrated.
    :raises BackendUnavailableError: the database cannot be reached.
    """
    try:
        return await prune(db, config)
    except LeaseHeldError:
        return None
