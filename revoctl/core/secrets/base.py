"""The contract between `SecretManager` and its back ends, and the records they exchange.

A back end is a `SecretStore`: it reads, writes and lists secrets and nothing
more. Caching, timeouts, fallback, rotation, auditing and redaction live in the
manager, so every store gets them the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from revoctl.core.errors import NotFoundError, UsageError
from revoctl.core.secrets.settings import SecretConfig, SecretProvider

__all__ = [
    "MAX_VALUE_BYTES",
    "NAME_PATTERN",
    "Secret",
    "SecretDisabledError",
    "SecretProperties",
    "SecretProvider",
    "SecretStore",
    "validate_name",
    "validate_value",
]

NAME_PATTERN = re.compile(r"[0-9A-Za-z-]{1,127}")
MAX_VALUE_BYTES = 25 * 1024
"""Key Vault's limit on a secret value; the local store applies it too, so both accept the same."""


@dataclass(frozen=True)
class SecretProperties:
    """One version of a secret, without its value."""

    name: str
    version: str
    updated_on: datetime
    enabled: bool = True


@dataclass(frozen=True)
class Secret:
    """One version of a secret with its value; the value stays out of ``repr``."""

    name: str
    value: str = field(repr=False)
    version: str
    updated_on: datetime
    enabled: bool
    provider: SecretProvider

    @property
    def properties(self) -> SecretProperties:
        return SecretProperties(self.name, self.version, self.updated_on, self.enabled)


class SecretDisabledError(NotFoundError):
    """The version exists but is disabled, so its value cannot be read (exit 3)."""


class SecretStore(Protocol):
    """A secret back end. Unknown names and versions raise `NotFoundError`; an unreachable
    back end raises `BackendUnavailableError`. Timeouts are the manager's job."""

    provider: SecretProvider

    @classmethod
    def from_config(cls, config: SecretConfig, *, home: Path) -> SecretStore: ...

    async def get(self, name: str, version: str | None = None) -> Secret:
        """The latest version of ``name``, or the given version."""
        ...

    async def set(self, name: str, value: str) -> Secret:
        """Write a new version and return it; older versions stay readable."""
        ...

    async def list_secrets(self) -> list[SecretProperties]:
        """The latest version of every secret, by name; never reads a value."""
        ...

    async def versions(self, name: str) -> list[SecretProperties]:
        """Every version of ``name``, newest first."""
        ...

    async def ping(self) -> None:
        """One cheap round trip that proves the back end answers."""
        ...

    async def close(self) -> None: ...


def validate_name(name: str) -> str:
    """``name`` when it follows Key Vault's rule ``^[0-9A-Za-z-]{1,127}$``.

    :raises UsageError: it does not.
    """
    if not NAME_PATTERN.fullmatch(name):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise UsageError(f"invalid secret name {shown!r}: use 1-127 letters, digits and dashes")
    return name


def validate_value(value: str) -> str:
    """``value`` when a store can hold it: not empty, valid text, at most 25 KiB of UTF-8.

    :raises UsageError: it cannot (the message never shows the value).
    """
    if not value:
        raise UsageError("a secret value cannot be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise UsageError("a secret value must be valid Unicode text") from None
    if size > MAX_VALUE_BYTES:
        raise UsageError(f"a secret value is limited to {MAX_VALUE_BYTES} bytes")
    return value


def version_before(version: str, newest_first: list[SecretProperties]) -> str | None:
    """The version written just before ``version``, from a newest-first history."""
    ids = [props.version for props in newest_first]
    if version in ids and ids.index(version) + 1 < len(ids):
        return ids[ids.index(version) + 1]
    return None
