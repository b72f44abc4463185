"""Secrets: Azure Key Vault or a local file store, behind one cached, fail-soft manager."""

from __future__ import annotations

from revoctl.core.secrets._audit import AuditEvent, AuditSink, DatabaseAuditSink
from revoctl.core.secrets._manager import Rotation, SecretManager
from revoctl.core.secrets._open import open_secret_manager
from revoctl.core.secrets.base import (
    Secret,
    SecretDisabledError,
    SecretProperties,
    SecretProvider,
    SecretStore,
    validate_name,
)

__all__ = [
    "AuditEvent",
    "AuditSink",
    "DatabaseAuditSink",
    "Rotation",
    "Secret",
    "SecretDisabledError",
    "SecretManager",
    "SecretProperties",
    "SecretProvider",
    "SecretStore",
    "open_secret_manager",
    "validate_name",
]
