"""The database layer: `DatabaseManager` (engine, pool, sessions, health) and migrations.

Names resolve lazily (PEP 562): ``db ping`` never pays for importing Alembic.
Tables live in `revoctl.core.db.models`; migrations in ``migrations/versions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._lazy import lazy_exports

if TYPE_CHECKING:
    from revoctl.config import DatabaseConfig
    from revoctl.core.db._manager import DatabaseManager
    from revoctl.core.db._migrations import current, downgrade, heads, history, upgrade
    from revoctl.core.db._retry import RetryPolicy
    from revoctl.core.db._stats import PoolStats
    from revoctl.core.references import references_secrets

_EXPORTS: dict[str, str] = {
    "DatabaseConfig": "revoctl.config",
    "DatabaseManager": "revoctl.core.db._manager",
    "PoolStats": "revoctl.core.db._stats",
    "RetryPolicy": "revoctl.core.db._retry",
    "current": "revoctl.core.db._migrations",
    "downgrade": "revoctl.core.db._migrations",
    "heads": "revoctl.core.db._migrations",
    "history": "revoctl.core.db._migrations",
    "references_secrets": "revoctl.core.references",
    "upgrade": "revoctl.core.db._migrations",
}

__all__ = [
    "DatabaseConfig",
    "DatabaseManager",
    "PoolStats",
    "RetryPolicy",
    "current",
    "downgrade",
    "heads",
    "history",
    "references_secrets",
    "upgrade",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
