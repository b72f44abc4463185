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


@dataclass
class Services:
    """The configured services, sharing one configuration and one state."""

    config: LoadedConfig
    db: DatabaseManager

    @property
    def settings(self) -> Settings:
        return self.config.settings

    async def health_check(self) -> dict[str, Any]:
        """The CONTRACT's health document: overall status and one entry per service."""
        return await gather_health({"database": self.db.health_check()})


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
    """
    loaded = config if isinstance(config, LoadedConfig) else load_config(config, profile)
    db = DatabaseManager(loaded.settings.database, role=role)
    await db.initialize()
    try:
        yield Services(loaded, db)
    finally:
        await db.close()


async def health_report(config: LoadedConfig, *, role: str = "cli") -> dict[str, Any]:
    """Build the services, check them all, and close them: ``revoctl health``."""
    async with load_services(config, role=role) as services:
        return await services.health_check()
