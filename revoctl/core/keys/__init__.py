"""Gateway keys: issued once, stored as a hash, revoked fleet-wide.

`KeyStore` is a component of `Services` (``svc.keys``): the CLI issues and revokes
through it, the gateway's key ring reads through it. Names resolve lazily (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._lazy import lazy_exports

if TYPE_CHECKING:
    from revoctl.core.keys._store import KEY_PATTERN as KEY_PATTERN
    from revoctl.core.keys._store import IssuedKey as IssuedKey
    from revoctl.core.keys._store import KeyRecord as KeyRecord
    from revoctl.core.keys._store import KeyStore as KeyStore
    from revoctl.core.keys._store import hash_key as hash_key

_EXPORTS: dict[str, str] = {
    "KEY_PATTERN": "revoctl.core.keys._store",
    "IssuedKey": "revoctl.core.keys._store",
    "KeyRecord": "revoctl.core.keys._store",
    "KeyStore": "revoctl.core.keys._store",
    "hash_key": "revoctl.core.keys._store",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
