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
* With ``audit_reads = true`` every read that reaches the provider (not a cache hit) is a
  row of that table too, written in batches off the read path (`revoctl.core.secret_audit`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._lazy import lazy_exports

if TYPE_CHECKING:
    from revoctl.core.secrets._audit import AuditEvent, AuditSink
    from revoctl.core.secrets._manager import Rotation, SecretManager
    from revoctl.core.secrets.base import (
        Secret,
        SecretDisabledError,
        SecretProperties,
        SecretStore,
        validate_name,
    )
    from revoctl.core.secrets.settings import AzureKeyVaultConfig, SecretConfig, SecretProvider

__getattr__, __dir__ = lazy_exports(__name__)
