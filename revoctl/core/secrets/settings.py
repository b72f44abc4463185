"""`SecretConfig`: where secrets are read from, the cache, and its bounds."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from revoctl.core._settings import Section
from revoctl.core.secrets.rotation_settings import RotationConfig

DAY = 86400.0


class SecretProvider(StrEnum):
    """Where secrets live: the value of ``[secrets] provider``."""

    LOCAL = "local"
    AZURE_KEY_VAULT = "azure_key_vault"


class AzureKeyVaultConfig(Section):
    """``[secrets.azure]``: the vault and the identity that reads it."""

    vault_url: str = ""
    tenant_id: str = ""
    client_id: str = ""
    verify_challenge_resource: bool = True

    @field_validator("vault_url")
    @classmethod
    def _https(cls, url: str) -> str:
        if url and not url.startswith("https://"):
            raise ValueError("must be an https:// URL, e.g. https://NAME.vault.azure.net/")
        return url


class SecretConfig(Section):
    """``[secrets]``: the provider, its fallback, the cache and its bounds."""

    provider: SecretProvider = SecretProvider.LOCAL
    fallback: Literal["local", "none"] = "local"
    cache_ttl_seconds: float = Field(3600, ge=0, le=30 * DAY)
    max_stale_seconds: float = Field(86400, ge=0, le=30 * DAY)
    timeout_seconds: float = Field(10, gt=0, le=300)
    audit_reads: bool = False
    """Record every read the provider answers (not cache hits) in the audit log."""
    azure: AzureKeyVaultConfig = AzureKeyVaultConfig()
    rotation: RotationConfig = RotationConfig()

    @model_validator(mode="after")
    def _vault_url_when_azure(self) -> SecretConfig:
        if self.provider is SecretProvider.AZURE_KEY_VAULT and not self.azure.vault_url:
            raise ValueError("azure.vault_url is required when provider is azure_key_vault")
        return self
