"""Secret changes made anywhere reach the gateway at once, not after the cache's TTL.

Every ``revoctl secrets set`` and ``rotate`` (from any host, through the secret manager)
records its change in ``secret_audit_log``. Each gateway instance reads the rows added
since its last look, once a second, and forgets the cached values of the secrets they
name: the next request reads the new version, so a rotated provider key is in use
within about a second on every worker. A change made outside revoctl (in the Azure
portal, say) is picked up when the cached value's TTL ends, as before.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Row
    from sqlalchemy.ext.asyncio import AsyncSession

    from revoctl.core.db import DatabaseManager
    from revoctl.core.secrets import SecretManager

logger = logging.getLogger("revoctl.gateway")

PENDING_GIVE_UP_SECONDS = 60.0


class SecretChangeWatcher:
    """Follows ``secret_audit_log`` from the row it starts at."""

    def __init__(self, db: DatabaseManager, secrets: SecretManager) -> None:
        self._db = db
        self._secrets = secrets
        self._last_id: int | None = None

    async def check(self) -> list[str]:
        """Forget the secrets changed since the last check; returns their names."""
        from sqlalchemy import func, select

        from revoctl.core.db.models import SecretAuditLog

        if self._last_id is None:  # start from now: what changed before is in no cache
            last = await self._db.transaction(
                lambda session: session.scalar(select(func.max(SecretAuditLog.id)))
            )
            self._last_id = int(last or 0)
            return []
        since = self._last_id

        async def read(session: AsyncSession) -> Sequence[Row[int, str, str, datetime]]:
            return (
                await session.execute(
                    select(
                        SecretAuditLog.id,
                        SecretAuditLog.secret_name,
                        SecretAuditLog.status,
                        SecretAuditLog.ts,
                    )
                    .where(SecretAuditLog.id > since)
                    .order_by(SecretAuditLog.id)
                )
            ).all()

        rows = await self._db.transaction(read)
        # A change still in flight (``pending``) is read again next time, unless its process
        # has plainly died (an intent older than a minute).
        abandoned = datetime.now(UTC) - timedelta(seconds=PENDING_GIVE_UP_SECONDS)
        waiting = [r.id for r in rows if r.status == "pending" and r.ts > abandoned]
        names = list(dict.fromkeys(r.secret_name for r in rows if r.status == "done"))
        if rows:
            self._last_id = min(waiting) - 1 if waiting else max(r.id for r in rows)
        for name in names:
            self._secrets.invalidate(name)
            logger.info("secret %r changed: its cached value is dropped", name)
        return names
