"""`load_services()`: the runtime's and the CLI's one way to get configured services."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from revoctl.config import LoadedConfig, Settings, load_config
from revoctl.core.db import DatabaseManager
from revoctl.core.health import gather_health
from revoctl.core.references import references_secrets
from revoctl.core.secrets import DatabaseAuditSink, SecretManager


@dataclass
class Services:
    """The configured services, sharing one configuration and one state."""

    config: LoadedConfig
    db: DatabaseManager
    secrets: SecretManager

    @property
    def settings(self) -> Settings:
        return self.config.settings

    async def health_check(self) -> dict[str, Any]:
        """The CONTRACT's health document: overall status and one entry per service."""
        return await gather_health(
            {"secrets": self.secrets.health_check(), "database": self.db.health_check()}
        )


@contextlib.asynccontextmanager
async def load_services(
    config: str | Path | LoadedConfig | None = None,
    profile: str | None = None,
    *,
    role: str = "runtime",
) -> AsyncIterator[Services]:
    """Build every service from the configuration, resolved as the CLI resolves it.

    ``role`` tags this process's database connections (``application_name``).

    :raises ConfigError: the configuration is invalid.
    :raises RevoctlError: the database URL references a secret that cannot be read.
    """
    loaded = config if isinstance(config, LoadedConfig) else load_config(config, profile)
    async with build_services(loaded, role, initialize_db=True) as services:
        yield services


@contextlib.asynccontextmanager
async def build_services(
    loaded: LoadedConfig, role: str, *, initialize_db: bool
) -> AsyncIterator[Services]:
    """The services wired to each other: the database URL may reference secrets, and
    secret changes are audited in the database. ``initialize_db`` opens the database
    now; otherwise it opens on first use, and a failure there is that use's alone."""
    async with SecretManager(loaded.settings.secrets, home=loaded.home) as secrets:
        db = DatabaseManager(
            loaded.settings.database, role=role, resolve=secrets.resolve_references
        )
        secrets.audit = DatabaseAuditSink(db)
        try:
            if initialize_db:
                await db.initialize()
            yield Services(loaded, db, secrets)
        finally:
            await db.close()


@contextlib.asynccontextmanager
async def open_database(
    config: LoadedConfig, *, role: str = "cli"
) -> AsyncIterator[DatabaseManager]:
    """The configured database, for commands that need nothing else.

    A URL with ``${secret:NAME}`` references needs the secret manager to resolve
    them, as the runtime does; a plain URL opens the database alone.

    :raises ConfigError: the configuration is invalid.
    """
    if references_secrets(config.settings.database.url):
        async with load_services(config, role=role) as services:
            yield services.db
        return
    async with DatabaseManager(config.settings.database, role=role) as db:
        yield db


async def health_report(config: LoadedConfig, *, role: str = "cli") -> dict[str, Any]:
    """Build the services, check them all, and close them: ``revoctl health``.

    The database is not opened up front: a failure to open it (an unreadable
    secret in its URL, say) is that service's unhealthy status, not an error.
    """
    async with build_services(config, role, initialize_db=False) as services:
        return await services.health_check()
