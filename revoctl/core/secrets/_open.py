"""`open_secret_manager()`: a manager for one CLI command, with the audit log when it writes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from revoctl.core.secrets._audit import DatabaseAuditSink
from revoctl.core.secrets._manager import SecretManager

if TYPE_CHECKING:
    from revoctl.config import LoadedConfig


@contextlib.asynccontextmanager
async def open_secret_manager(
    loaded: LoadedConfig, *, audit: bool = False, role: str = "cli"
) -> AsyncIterator[SecretManager]:
    """A manager built from ``loaded``, closed afterwards.

    With ``audit``, changes are recorded in the database (whose URL may itself
    reference secrets, resolved through this manager); reads never touch it, so
    ``secrets get`` does not import the database layer.
    """
    async with SecretManager(loaded.settings.secrets, home=loaded.home) as manager:
        if not audit:
            yield manager
            return
        from revoctl.core.db import DatabaseManager

        db = DatabaseManager(
            loaded.settings.database, role=role, resolve=manager.resolve_references
        )
        manager.audit = DatabaseAuditSink(db)
        try:
            yield manager
        finally:
            await db.close()
