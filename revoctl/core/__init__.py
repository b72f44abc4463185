"""The services the platform runtime imports; the CLI drives the same ones.

Names are resolved lazily (PEP 562) so that importing `revoctl.core` costs
nothing until a service is used: the CLI's start-up depends on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._lazy import lazy_exports

if TYPE_CHECKING:
    from revoctl.config import DatabaseConfig, SecretConfig
    from revoctl.core.db import DatabaseManager
    from revoctl.core.errors import (
        BackendUnavailableError,
        CheckFailedError,
        ConfigError,
        NotFoundError,
        RevoctlError,
        UsageError,
    )
    from revoctl.core.secrets import SecretManager, SecretProvider
    from revoctl.core.services import Services, load_services

_EXPORTS: dict[str, str] = {
    "BackendUnavailableError": "revoctl.core.errors",
    "CheckFailedError": "revoctl.core.errors",
    "ConfigError": "revoctl.core.errors",
    "DatabaseConfig": "revoctl.config",
    "DatabaseManager": "revoctl.core.db",
    "NotFoundError": "revoctl.core.errors",
    "RevoctlError": "revoctl.core.errors",
    "SecretConfig": "revoctl.config",
    "SecretManager": "revoctl.core.secrets",
    "SecretProvider": "revoctl.core.secrets",
    "Services": "revoctl.core.services",
    "UsageError": "revoctl.core.errors",
    "load_services": "revoctl.core.services",
}

__all__ = [
    "BackendUnavailableError",
    "CheckFailedError",
    "ConfigError",
    "DatabaseConfig",
    "DatabaseManager",
    "NotFoundError",
    "RevoctlError",
    "SecretConfig",
    "SecretManager",
    "SecretProvider",
    "Services",
    "UsageError",
    "load_services",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
