"""The secret back ends, built by `secret_store_for()`; each imports its client library lazily."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, cast

from revoctl.core.secrets.base import SecretProvider, SecretStore

if TYPE_CHECKING:
    from revoctl.core.secrets.settings import SecretConfig

_STORES: dict[SecretProvider, str] = {
    SecretProvider.LOCAL: "revoctl.core.secrets.stores.file:FileSecretStore",
    SecretProvider.AZURE_KEY_VAULT: "revoctl.core.secrets.stores.keyvault:KeyVaultSecretStore",
}


def secret_store_for(provider: SecretProvider, config: SecretConfig, *, home: Path) -> SecretStore:
    """The store for ``provider``, configured from ``config`` (the local one lives in ``home``)."""
    module, _, name = _STORES[provider].partition(":")
    store_class = cast("type[SecretStore]", getattr(importlib.import_module(module), name))
    return store_class.from_config(config, home=home)


__all__ = ["secret_store_for"]
