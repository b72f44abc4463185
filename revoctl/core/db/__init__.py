"""The database layer: `DatabaseManager` (engine, pool, sessions, probes, health) and migrations.

Names resolve lazily (PEP 562): ``db ping`` never pays for importing SQLAlchemy or
Alembic. Tables live in `revoctl.core.db.models`; migrations in ``migrations/versions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._lazy import lazy_exports

if TYPE_CHECKING:
    from revoctl.core.db._manager import DatabaseManager as DatabaseManager
    from revoctl.core.db._migrations import current as current
    from revoctl.core.db._migrations import downgrade as downgrade
    from revoctl.core.db._migrations import heads as heads
    from revoctl.core.db._migrations import history as history
    from revoctl.core.db._migrations import upgrade as upgrade
    from revoctl.core.db._probe import REVISIONS as REVISIONS
    from revoctl.core.db._stats import PoolStats as PoolStats
    from revoctl.core.db.settings import DatabaseConfig as DatabaseConfig

_EXPORTS: dict[str, str] = {
    "DatabaseConfig": "revoctl.core.db.settings",
    "DatabaseManager": "revoctl.core.db._manager",
    "PoolStats": "revoctl.core.db._stats",
    "REVISIONS": "revoctl.core.db._probe",
    "current": "revoctl.core.db._migrations",
    "downgrade": "revoctl.core.db._migrations",
    "heads": "revoctl.core.db._migrations",
    "history": "revoctl.core.db._migrations",
    "upgrade": "revoctl.core.db._migrations",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
