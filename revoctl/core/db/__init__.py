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
    from revoctl.core.db._retention import LeaseHeldError, apply_retention, prune
    from revoctl.core.db._revisions import SHIPPED_REVISIONS
    from revoctl.core.db._stats import DbObserver, PoolStats
    from revoctl.core.db.settings import DatabaseConfig, RetentionConfig

__getattr__, __dir__ = lazy_exports(__name__)
