"""`FileSecretStore`: every secret, every version, in one JSON file in ``REVOCTL_HOME``.

Writers take a cross-process file lock, re-read the file under it, and replace it
atomically (temporary file, fsync, rename, fsync of the directory), so a crash or
a ``SIGKILL`` at any moment leaves either the old file or the new one. Readers
take no lock. The lock is waited for by polling on the event loop, never in a
thread: a write that times out while waiting has done nothing, and a write that
has the lock runs to the end without yielding, so a caller's timeout can never
report a failure for a version that then lands. Like ssh with a private key, the
store refuses to be read while its mode lets anyone but the owner read it. A file
that cannot be parsed is never overwritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import filelock

from revoctl.core._paths import check_private_dir, ensure_writable_dir, holding
from revoctl.core.errors import BackendUnavailableError, NotFoundError, UsageError
from revoctl.core.secrets.base import Secret, SecretProperties, SecretProvider

if TYPE_CHECKING:
    from revoctl.core.secrets.settings import SecretConfig

STORE_FILE_NAME = "secrets.json"
FORMAT_VERSION = 1


class FileSecretStore:
    """The local secret store: one 0600 JSON file, versions newest first.

    The file holds ``{"format": 1, "secrets": {name: [version, ...]}}``, each version
    ``{"version", "value", "updated_on", "enabled"}``.
    """

    provider = SecretProvider.LOCAL

    def __init__(self, path: Path, *, lock_timeout: float = 10.0) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        self._lock = filelock.FileLock(f"{path}.lock", mode=0o600)

    @classmethod
    def from_config(cls, config: SecretConfig, *, home: Path) -> FileSecretStore:
        # A little under the manager's bound on the whole call, so that a held lock is
        # reported as such rather than as a provider that did not answer.
        timeout = config.timeout_seconds
        return cls(home / STORE_FILE_NAME, lock_timeout=max(timeout * 0.8, timeout - 1))

    async def get(self, name: str, version: str | None = None) -> Secret:
        entries = await self._entries(name)
        if version is None:
            entry = entries[0]
        else:
            found = [e for e in entries if e["version"] == version]
            if not found:
                raise NotFoundError(f"secret {name!r} has no version {version!r}")
            entry = found[0]
        return self._secret(name, entry)

    async def set(self, name: str, value: str) -> Secret:
        entry = {
            "version": uuid.uuid4().hex,
            "value": value,
            "updated_on": datetime.now(UTC).isoformat(),
            "enabled": True,
        }
        await self._add_version(name, entry)
        return self._secret(name, entry)

    async def list_secrets(self) -> list[SecretProperties]:
        document = await asyncio.to_thread(self._read)
        return [_properties(name, entries[0]) for name, entries in sorted(document.items())]

    async def versions(self, name: str) -> list[SecretProperties]:
        return [_properties(name, entry) for entry in await self._entries(name)]

    async def ping(self) -> None:
        await asyncio.to_thread(self._read)

    async def close(self) -> None:
        """Nothing to release: the lock is held only during a write."""

    def _secret(self, name: str, entry: dict[str, Any]) -> Secret:
        props = _properties(name, entry)
        return Secret(
            name, entry["value"], entry["version"], props.updated_on, props.enabled, self.provider
        )

    async def _entries(self, name: str) -> list[dict[str, Any]]:
        entries = (await asyncio.to_thread(self._read)).get(name)
        if not entries:
            raise NotFoundError(f"secret {name!r} not found in the local store ({self.path})")
        return entries

    def _read(self) -> dict[str, list[dict[str, Any]]]:
        """The secrets in the file, after checking who may read it; empty when it does not exist."""
        check_private_dir(self.path.parent)
        try:
            with self.path.open("rb") as fh:
                mode = os.fstat(fh.fileno()).st_mode
                if mode & 0o077:
                    raise UsageError(
                        f"refusing to use the secret store {self.path}: its mode "
                        f"{stat.filemode(mode)} lets other users access it; "
                        f"run 'chmod 600 {self.path}'"
                    )
                raw = fh.read()
        except FileNotFoundError:
            return {}
        except IsADirectoryError:
            raise UsageError(f"the secret store {self.path} is a directory, not a file") from None
        except NotADirectoryError:
            raise UsageError(
                f"the secret store {self.path} cannot exist: {self.path.parent} is not a directory"
            ) from None
        except OSError as exc:
            raise BackendUnavailableError(
                f"cannot read the secret store {self.path}: {exc.strerror}"
            ) from None
        return _parse(raw, self.path)

    async def _add_version(self, name: str, entry: dict[str, Any]) -> None:
        """Wait for the lock without blocking the loop, then write without yielding."""
        ensure_writable_dir(self.path.parent, "secret store")
        busy = f"the secret store {self.path} is locked by another process; nothing was written"
        async with holding(self._lock, timeout=self.lock_timeout, busy=busy):
            secrets = self._read()
            secrets[name] = [entry, *secrets.get(name, [])]
            self._replace({"format": FORMAT_VERSION, "secrets": secrets})

    def _replace(self, document: dict[str, Any]) -> None:
        """Write ``document`` atomically; called with the lock held."""
        directory = self.path.parent
        for stale in directory.glob(f".{self.path.name}.*.tmp"):  # left by a killed writer
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(json.dumps(document, indent=1).encode())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _parse(raw: bytes, path: Path) -> dict[str, list[dict[str, Any]]]:
    """The ``secrets`` table of a store file, checked enough that no later step trips on it."""
    try:
        document = json.loads(raw)
        secrets = document["secrets"]
        if document.get("format") != FORMAT_VERSION or not isinstance(secrets, dict):
            raise ValueError("unknown format")
        for entries in secrets.values():
            if not isinstance(entries, list) or not entries:
                raise ValueError("a secret without versions")
            for entry in entries:
                _properties("-", entry)
                if not (isinstance(entry["value"], str) and isinstance(entry["version"], str)):
                    raise ValueError("a value or version that is not text")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # The message names the problem, never the content, which holds secret values.
        raise UsageError(
            f"the secret store {path} is not a valid store file ({type(exc).__name__}); "
            "it was left untouched"
        ) from None
    return dict(secrets)


def _properties(name: str, entry: dict[str, Any]) -> SecretProperties:
    return SecretProperties(
        name=name,
        version=entry["version"],
        updated_on=datetime.fromisoformat(entry["updated_on"]),
        enabled=bool(entry["enabled"]),
    )
