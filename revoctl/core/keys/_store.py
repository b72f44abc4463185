"""`KeyStore`: the ``gateway_keys`` table, a core component (``svc.keys``).

A key is ``rvk_<key_id>_<secret>``: 8 random bytes of id (not secret: it finds the
row) and 32 of secret. The database keeps the id and a SHA-256 of the whole key; the
key itself is printed once by ``revoctl keys create`` and never stored, logged or
shown again. The CLI creates, lists and revokes through this store; the gateway
reads every key through it into its in-memory ring (`revoctl.runtime.keys`).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from revoctl.core.errors import NotFoundError, UsageError
from revoctl.core.redaction import register_secret

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from revoctl.core.db import DatabaseManager

PREFIX = "rvk_"
KEY_PATTERN = re.compile(r"^rvk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_EXPIRES_IN = 10 * 366 * 86400


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: the only time ``key`` exists outside the caller's hands."""

    name: str
    key: str
    expires_at: datetime | None


@dataclass(frozen=True)
class KeyRecord:
    """A key as stored: everything but the key."""

    name: str
    key_id: str
    key_hash: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    tier: str | None = None
    """The key's ``[tiers.NAME]``; None: the gateway's own rules."""
    budget_added: float = 0.0
    """Top-ups (``keys budget NAME --add``) of the period ``budget_added_period``."""
    budget_added_period: int | None = None
    previous_key_id: str | None = None
    """After ``keys rotate --overlap``: the replaced key's id and hash, valid until
    ``previous_expires_at``."""
    previous_key_hash: str | None = None
    previous_expires_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def validate_name(name: str) -> str:
    """:raises UsageError: not 1-64 letters, digits, ``_ . @ -``."""
    if not NAME_PATTERN.fullmatch(name):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise UsageError(
            f"invalid key name {shown!r}: use 1-64 letters, digits, '_', '.', '@', '-'"
        )
    return name


class KeyStore:
    """The ``gateway_keys`` table: create, list, revoke (the CLI), and read all (the runtime)."""

    def __init__(self, db: DatabaseManager) -> None:
        self._db = db

    async def close(self) -> None:
        """Nothing of its own to close: the database is its own component."""

    async def create(self, name: str, *, expires_in: float | None = None, actor: str) -> IssuedKey:
        """A new key for ``name``.

        :raises UsageError: the name is invalid or taken, or ``expires_in`` is not positive.
        """
        from sqlalchemy.exc import IntegrityError

        from revoctl.core.db.models import GatewayKey

        validate_name(name)
        if expires_in is not None and not 0 < expires_in <= MAX_EXPIRES_IN:
            raise UsageError(f"--expires-in must be 1 to {MAX_EXPIRES_IN} seconds")
        key_id = secrets.token_hex(8)
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        register_secret(key)
        now = datetime.now(UTC)
        expires_at = now + timedelta(seconds=expires_in) if expires_in else None
        row = {
            "name": name,
            "key_id": key_id,
            "key_hash": hash_key(key),
            "created_at": now,
            "created_by": actor,
            "expires_at": expires_at,
        }

        async def add(session: AsyncSession) -> None:
            session.add(GatewayKey(**row))

        try:
            await self._db.transaction(add)
        except IntegrityError:
            raise UsageError(
                f"a key named {name!r} exists; revoke it or choose another name"
            ) from None
        return IssuedKey(name, key, expires_at)

    async def list_keys(self) -> list[KeyRecord]:
        """Every key, oldest first; never a key, only its record."""
        from sqlalchemy import select

        from revoctl.core.db.models import GatewayKey

        async def read(session: AsyncSession) -> list[KeyRecord]:
            rows = (await session.execute(select(GatewayKey).order_by(GatewayKey.id))).scalars()
            return [_record(row) for row in rows]

        return await self._db.transaction(read)

    async def revoke(self, name: str) -> KeyRecord:
        """Revoke ``name`` (again is harmless: the first revocation time stays).

        :raises NotFoundError: no key has that name.
        """
        from sqlalchemy import select

        from revoctl.core.db.models import GatewayKey

        validate_name(name)

        async def revoke(session: AsyncSession) -> KeyRecord:
            row = (
                await session.execute(select(GatewayKey).where(GatewayKey.name == name))
            ).scalar_one_or_none()
            if row is None:
                raise NotFoundError(f"no gateway key named {name!r}")
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
            return _record(row)

        return await self._db.transaction(revoke)


def _record(row: Any) -> KeyRecord:
    return KeyRecord(
        name=row.name,
        key_id=row.key_id,
        key_hash=row.key_hash,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )
