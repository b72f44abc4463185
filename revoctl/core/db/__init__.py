"""The database layer: `DatabaseManager` (engine, pool, sessions, probes, health) and migrations.

Names resolve lazily (PEP 562): ``db ping`` never pays for importing SQLAlchemy or
Alembic. Tables live in `revoctl.core.db.models`; migrations in ``migrations/versions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._lazy import lazy_exports

if TYPE_CHECKING:  # for the type checker: `X as X` re-exports without a third list
    from revoctl.core.db._manager import DatabaseManager as DatabaseManager
    from revoctl.core.db._migrations import current as current
    from revoctl.core.db._migrations import downgrade as downgrade
    from revoctl.core.db._migrations import heads as heads
    from revoctl.core.db._migrations import history as history
    from revoctl.core.db._migrations import upgrade as upgrade
    from revoctl.core.db._revisions import SHIPPED_REVISIONS as SHIPPED_REVISIONS
    from revoctl.core.db._stats import PoolStats as PoolStats
    from revoctl.core.db.settings import DatabaseConfig as DatabaseConfig

_EXPORTS: dict[str, str] = {
    "SHIPPED_REVISIONS": "revoctl.core.db._revisions",
    "DatabaseConfig": "revoctl.core.db.settings",
    "DatabaseManager": "revoctl.core.db._manager",
    "PoolStats": "revoctl.core.db._stats",
    "current": "revoctl.core.db._migrations",
    "downgrade": "revoctl.core.db._migrations",
    "heads": "revoctl.core.db._migrations",
    "history": "revoctl.core.db._migrations",
    "upgrade": "revoctl.core.db._migrations",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
