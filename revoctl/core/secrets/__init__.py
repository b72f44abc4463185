"""Secrets: Azure Key Vault or a local file store, behind one cached, fail-soft manager.

Decisions worth knowing before relying on them:

* The cache lives in the process's memory only; values are never written to disk by
  the Azure provider, not even encrypted. A long-running process (the runtime) rides
  out a vault outage on its cache (stale-if-error, up to ``max_stale_seconds`` past
  the TTL). A CLI command is a new process with an empty cache, so it relies on the
  ``fallback = "local"`` store instead, and exits 4 when there is none.
* Reads (get, list, versions) may be answered by the fallback; writes (set, rotate)
  never are, so one secret is never split across two stores.
* Every set and rotate is recorded in the ``secret_audit_log`` table (migration
  0002). When that fails (no database, not migrated) the change still stands: the
  failure is logged as a warning and the rotation reports ``audited: false``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._lazy import lazy_exports

if TYPE_CHECKING:
    from revoctl.core.secrets._audit import AuditEvent as AuditEvent
    from revoctl.core.secrets._audit import AuditSink as AuditSink
    from revoctl.core.secrets._manager import Rotation as Rotation
    from revoctl.core.secrets._manager import SecretManager as SecretManager
    from revoctl.core.secrets.base import Secret as Secret
    from revoctl.core.secrets.base import SecretDisabledError as SecretDisabledError
    from revoctl.core.secrets.base import SecretProperties as SecretProperties
    from revoctl.core.secrets.base import SecretStore as SecretStore
    from revoctl.core.secrets.base import validate_name as validate_name
    from revoctl.core.secrets.settings import AzureKeyVaultConfig as AzureKeyVaultConfig
    from revoctl.core.secrets.settings import SecretConfig as SecretConfig
    from revoctl.core.secrets.settings import SecretProvider as SecretProvider

_EXPORTS: dict[str, str] = {
    "AuditEvent": "revoctl.core.secrets._audit",
    "AuditSink": "revoctl.core.secrets._audit",
    "AzureKeyVaultConfig": "revoctl.core.secrets.settings",
    "Rotation": "revoctl.core.secrets._manager",
    "Secret": "revoctl.core.secrets.base",
    "SecretConfig": "revoctl.core.secrets.settings",
    "SecretDisabledError": "revoctl.core.secrets.base",
    "SecretManager": "revoctl.core.secrets._manager",
    "SecretProperties": "revoctl.core.secrets.base",
    "SecretProvider": "revoctl.core.secrets.settings",
    "SecretStore": "revoctl.core.secrets.base",
    "validate_name": "revoctl.core.secrets.base",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
