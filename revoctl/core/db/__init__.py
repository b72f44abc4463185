"""The database layer: `DatabaseManager` (engine, pool, sessions, probes, health) and migrations.

Names resolve lazily (PEP 562): ``db ping`` never pays for importing SQLAlchemy or
Alembic. Tables live in `revoctl.core.db.models`; migrations in ``migrations/versions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._lazy import lazy_exports

if TYPE_CHECKING:
    from revoctl.core.db._manager import DatabaseManager
    from revoctl.core.db._migrations import current, downgrade, heads, history, upgrade
    from revoctl.core.db._probe import REVISIONS
    from revoctl.core.db._stats import PoolStats
    from revoctl.core.db.settings import DatabaseConfig

_EXPORTS: dict[str, str] = {
    "REVISIONS": "revoctl.core.db._probe",
    "DatabaseConfig": "revoctl.core.db.settings",
    "DatabaseManager": "revoctl.core.db._manager",
    "PoolStats": "revoctl.core.db._stats",
    "current": "revoctl.core.db._migrations",
    "downgrade": "revoctl.core.db._migrations",
    "heads": "revoctl.core.db._migrations",
    "history": "revoctl.core.db._migrations",
    "upgrade": "revoctl.core.db._migrations",
}

__all__ = [
    "REVISIONS",
    "DatabaseConfig",
    "DatabaseManager",
    "PoolStats",
    "current",
    "downgrade",
    "heads",
    "history",
    "upgrade",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
