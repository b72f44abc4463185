"""`open_secret_manager()`: a manager for one CLI command, with the audit log when it writes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from revoctl.core.secrets._manager import SecretManager

if TYPE_CHECKING:
    from revoctl.config import LoadedConfig


@contextlib.asynccontextmanager
async def open_secret_manager(
    loaded: LoadedConfig, *, audit: bool = False, role: str = "cli"
) -> AsyncIterator[SecretManager]:
    """A manager built from ``loaded``, closed afterwards.

    With ``audit``, changes are recorded in the database (whose URL may itself
    reference secrets, resolved through this manager), wired as `load_services`
    wires them; reads never touch it, so ``secrets get`` does not import the
    database layer.
    """
    if audit:
        from revoctl.core.services import build_services

        async with build_services(loaded, role, initialize_db=False) as services:
            yield services.secrets
        return
    async with SecretManager(loaded.settings.secrets, home=loaded.home) as manager:
        yield manager
