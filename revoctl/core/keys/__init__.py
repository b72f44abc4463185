"""Gateway keys: issued once, stored as a hash, revoked fleet-wide.

`KeyStore` is a component of `Services` (``svc.keys``): the CLI issues and revokes
through it, the gateway's key ring reads through it. Names resolve lazily (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._lazy import lazy_exports

if TYPE_CHECKING:
    from revoctl.core.keys._budget import BudgetWindow, budget_window
    from revoctl.core.keys._store import (
        KEY_PATTERN,
        MAX_EXPIRES_IN,
        MAX_OVERLAP,
        NAME_PATTERN,
        IssuedKey,
        KeyRecord,
        KeyStore,
        hash_key,
    )

__getattr__, __dir__ = lazy_exports(__name__)
