"""Gateway keys: issued once, stored as a hash, checked in constant time, revoked fleet-wide.

A key is ``rvk_<key_id>_<secret>``: 8 random bytes of id (not secret: it finds the
row) and 32 of secret. The database keeps the id and a SHA-256 of the whole key; the
key itself is printed once by ``revoctl keys create`` and never stored, logged or
shown again. Each gateway instance keeps every key's id, hash, expiry and revocation
in memory and re-reads them every ``gateway.keys_refresh_seconds`` (0.5 s), so a
request costs no database round trip and a revocation reaches every instance within
that interval. A key id the instance has not seen yet triggers one refresh at once,
so a key works on every instance as soon as it is created.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from revoctl.core.errors import NotFoundError, UsageError
from revoctl.core.redaction import register_secret

if TYPE_CHECKING:
    from revoctl.core.db import DatabaseManager

logger = logging.getLogger("revoctl.keys")

PREFIX = "rvk_"
KEY_PATTERN = re.compile(r"^rvk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_EXPIRES_IN = 10 * 366 * 86400
UNKNOWN_REFRESH_SECONDS = 0.1
"""An unseen key id refreshes the keys at once, but not more often than this."""


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
        await self._db.ensure_schema()
        try:
            async with self._db.get_async_session() as session:
                session.add(
                    GatewayKey(
                        name=name,
                        key_id=key_id,
                        key_hash=hash_key(key),
                        created_at=now,
                        created_by=actor,
                        expires_at=expires_at,
                    )
                )
        except IntegrityError:
            raise UsageError(
                f"a key named {name!r} exists; revoke it or choose another name"
            ) from None
        return IssuedKey(name, key, expires_at)

    async def list_keys(self) -> list[KeyRecord]:
        """Every key, oldest first; never a key, only its record."""
        from sqlalchemy import select

        from revoctl.core.db.models import GatewayKey

        await self._db.ensure_schema()
        async with self._db.get_async_session() as session:
            rows = (await session.execute(select(GatewayKey).order_by(GatewayKey.id))).scalars()
            return [_record(row) for row in rows]

    async def revoke(self, name: str) -> KeyRecord:
        """Revoke ``name`` (again is harmless: the first revocation time stays).

        :raises NotFoundError: no key has that name.
        """
        from sqlalchemy import select

        from revoctl.core.db.models import GatewayKey

        validate_name(name)
        await self._db.ensure_schema()
        async with self._db.get_async_session() as session:
            row = (
                await session.execute(select(GatewayKey).where(GatewayKey.name == name))
            ).scalar_one_or_none()
            if row is None:
                raise NotFoundError(f"no gateway key named {name!r}")
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
            return _record(row)


def _record(row: Any) -> KeyRecord:
    return KeyRecord(
        name=row.name,
        key_id=row.key_id,
        key_hash=row.key_hash,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


class KeyRing:
    """The runtime's view of the keys: in memory, refreshed in the background."""

    def __init__(
        self,
        store: KeyStore,
        *,
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._by_id: dict[str, KeyRecord] = {}
        self._refreshing: asyncio.Lock | None = None
        self._last_refresh = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    async def start(self) -> None:
        """Load the keys, then keep them fresh until `stop()`."""
        await self.refresh()
        self._task = asyncio.create_task(self._keep_fresh(), name="revoctl-keys")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def refresh(self) -> None:
        """Re-read every key. A failure keeps the last view (a database outage must not
        lock every caller out) and is reported by health."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            try:
                records = await self._store.list_keys()
            except Exception as exc:  # the last view stands; say why in health
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("gateway keys not refreshed: %s", self.last_error)
                return
            self._by_id = {record.key_id: record for record in records}
            self._last_refresh = self._clock()
            self.last_error = None

    async def _keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            await self.refresh()

    async def verify(self, presented: str) -> str | None:
        """The name of the key ``presented`` when it is valid, unexpired and unrevoked."""
        match = KEY_PATTERN.fullmatch(presented)
        if match is None:
            return None
        record = self._by_id.get(match.group(1))
        if record is None and self._clock() - self._last_refresh >= UNKNOWN_REFRESH_SECONDS:
            await self.refresh()  # created since the last refresh, perhaps
            record = self._by_id.get(match.group(1))
        expected = record.key_hash if record is not None else "0" * 64
        matches = hmac.compare_digest(hash_key(presented), expected)
        if record is None or not matches or not record.usable(datetime.now(UTC)):
            return None
        return record.name

    def health(self) -> dict[str, Any]:
        age = self._clock() - self._last_refresh
        return {
            "keys": len(self._by_id),
            "refreshed_seconds_ago": round(age, 3) if age != float("inf") else None,
            "error": self.last_error,
        }
