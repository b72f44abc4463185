"""`KeyStore`: the ``gateway_keys`` table, a core component (``svc.keys``).

A key is ``rvk_<key_id>_<secret>``: 8 random bytes of id (not secret: it finds the
row) and 32 of secret. The database keeps the id and a SHA-256 of the whole key; the
key itself is printed once by ``revoctl keys create`` (or ``rotate``) and never stored,
logged or shown again. The CLI and the admin API create, change and revoke through this
store (by way of `revoctl.core.accounts`); the gateway reads every key through it into its
in-memory ring (`revoctl.runtime.keys`).

A rotation gives the name a new key and keeps the one it replaces as ``previous_*`` until
the overlap ends, so callers can move over without a gap; the name, its tier, its creation
time (its budget periods) and so its spend stay. Every change writes its
``gateway_key_events`` row in the same transaction as the change itself: the audit cannot
miss a change nor record one that did not happen. An event holds names, ids and settings,
never a key or its hash.
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
    from collections.abc import Callable

    from sqlalchemy.ext.asyncio import AsyncSession

    from revoctl.core.db import DatabaseManager
    from revoctl.core.db.models import GatewayKey

PREFIX = "rvk_"
KEY_PATTERN = re.compile(r"^rvk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_EXPIRES_IN = 10 * 366 * 86400
MAX_OVERLAP = 30 * 86400
"""The longest a replaced key may keep working after a rotation."""
MAX_TOP_UP = 1e9


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
    """The ``gateway_keys`` table: create, rotate, change, revoke (each audited), read all."""

    def __init__(self, db: DatabaseManager) -> None:
        self._db = db

    async def close(self) -> None:
        """Nothing of its own to close: the database is its own component."""

    async def create(
        self,
        name: str,
        *,
        tier: str | None = None,
        expires_in: float | None = None,
        actor: str,
    ) -> IssuedKey:
        """A new key for ``name``, of ``tier`` (None: the gateway's own rules).

        :raises UsageError: the name is invalid or taken, or ``expires_in`` is not positive.
        """
        from sqlalchemy.exc import IntegrityError

        from revoctl.core.db.models import GatewayKey

        validate_name(name)
        if expires_in is not None and not 0 < expires_in <= MAX_EXPIRES_IN:
            raise UsageError(f"--expires-in must be 1 to {MAX_EXPIRES_IN} seconds")
        key_id, key = _new_key()
        now = datetime.now(UTC)
        expires_at = now + timedelta(seconds=expires_in) if expires_in else None
        row = {
            "name": name,
            "key_id": key_id,
            "key_hash": hash_key(key),
            "created_at": now,
            "created_by": actor,
            "expires_at": expires_at,
            "tier": tier,
        }
        detail = {"key_id": key_id, "tier": tier, "expires_at": _iso(expires_at)}

        async def add(session: AsyncSession) -> None:
            session.add(GatewayKey(**row))
            session.add(_event(name, "created", actor, detail, now))

        try:
            await self._db.transaction(add)
        except IntegrityError:
            raise UsageError(
                f"a key named {name!r} exists; revoke it or choose another name"
            ) from None
        return IssuedKey(name, key, expires_at)

    async def get(self, name: str) -> KeyRecord:
        """``name``'s record.

        :raises NotFoundError: no key has that name.
        """
        validate_name(name)

        async def read(session: AsyncSession) -> KeyRecord:
            return _record(await _row(session, name, lock=False))

        return await self._db.transaction(read)

    async def list_keys(self) -> list[KeyRecord]:
        """Every key, oldest first; never a key, only its record."""
        from sqlalchemy import select

        from revoctl.core.db.models import GatewayKey

        async def read(session: AsyncSession) -> list[KeyRecord]:
            rows = (await session.execute(select(GatewayKey).order_by(GatewayKey.id))).scalars()
            return [_record(row) for row in rows]

        return await self._db.transaction(read)

    async def update(self, name: str, *, tier: str | None, actor: str) -> KeyRecord:
        """Move ``name`` to ``tier`` (None: the gateway's own rules).

        :raises NotFoundError: no key has that name.
        """

        def change(row: GatewayKey, now: datetime) -> dict[str, Any] | None:
            if row.tier == tier:
                return None
            detail = {"tier": tier, "previous_tier": row.tier}
            row.tier = tier
            return detail

        return await self._change(name, "updated", actor, change)

    async def rotate(self, name: str, *, overlap_seconds: float = 0, actor: str) -> IssuedKey:
        """A new key for ``name``; the one it replaces keeps working for ``overlap_seconds``
        (0: it stops at once). Name, tier, creation time and spend stay.

        :raises NotFoundError: no key has that name.
        :raises UsageError: the key is revoked, or the overlap is out of range.
        """
        if not 0 <= overlap_seconds <= MAX_OVERLAP:
            raise UsageError(f"--overlap must be 0 to {MAX_OVERLAP} seconds")
        key_id, key = _new_key()

        def change(row: GatewayKey, now: datetime) -> dict[str, Any]:
            if row.revoked_at is not None:
                raise UsageError(f"the key {name!r} is revoked: create a new one instead")
            until = now + timedelta(seconds=overlap_seconds)
            detail = {
                "key_id": key_id,
                "previous_key_id": row.key_id,
                "previous_expires_at": _iso(until),
            }
            row.previous_key_id, row.previous_key_hash = row.key_id, row.key_hash
            row.previous_expires_at = until
            row.key_id, row.key_hash = key_id, hash_key(key)
            return detail

        record = await self._change(name, "rotated", actor, change)
        return IssuedKey(name, key, record.expires_at)

    async def add_budget(self, name: str, amount: float, period: int, *, actor: str) -> KeyRecord:
        """Top up ``name``'s budget period ``period`` (counted from its creation) by ``amount``:
        added to that period's top-ups, or replacing an earlier period's.

        :raises NotFoundError: no key has that name.
        :raises UsageError: ``amount`` is not positive.
        """
        if not 0 < amount <= MAX_TOP_UP:
            raise UsageError(f"--add must be more than 0 and at most {MAX_TOP_UP:g}")

        def change(row: GatewayKey, now: datetime) -> dict[str, Any]:
            same = row.budget_added_period == period
            row.budget_added = (row.budget_added if same else 0.0) + amount
            row.budget_added_period = period
            return {"amount": amount, "period": period, "budget_added": row.budget_added}

        return await self._change(name, "budget_added", actor, change)

    async def revoke(self, name: str, *, actor: str | None = None) -> KeyRecord:
        """Revoke ``name`` (again is harmless: the first revocation time stays, and only it
        is audited); its replaced key, if still in its overlap, stops with it.

        :raises NotFoundError: no key has that name.
        """
        from revoctl.core.actors import default_actor

        def change(row: GatewayKey, now: datetime) -> dict[str, Any] | None:
            if row.revoked_at is not None:
                return None
            row.revoked_at = now
            return {"key_id": row.key_id}

        return await self._change(name, "revoked", actor or default_actor(), change)

    async def _change(
        self,
        name: str,
        action: str,
        actor: str,
        change: Callable[[GatewayKey, datetime], dict[str, Any] | None],
    ) -> KeyRecord:
        """Apply ``change`` to ``name``'s row (locked) and, when it changed something (a
        detail, not None), write its event; one transaction."""
        validate_name(name)

        async def apply(session: AsyncSession) -> KeyRecord:
            row = await _row(session, name, lock=True)
            now = datetime.now(UTC)
            detail = change(row, now)
            if detail is not None:
                session.add(_event(name, action, actor, detail, now))
            await session.flush()
            return _record(row)

        return await self._db.transaction(apply)


def _new_key() -> tuple[str, str]:
    """A new key's id and the key (registered for redaction: never in a log line)."""
    key_id = secrets.token_hex(8)
    key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    register_secret(key)
    return key_id, key


async def _row(session: AsyncSession, name: str, *, lock: bool) -> GatewayKey:
    """``name``'s row; with ``lock``, locked until the transaction ends: a write that changes
    nothing comes first, which takes PostgreSQL's row lock and SQLite's write lock before
    anything is read (a ``SELECT ... FOR UPDATE`` would lock nothing on SQLite, where two
    processes could then both read and one's change be lost).

    :raises NotFoundError: no key has that name.
    """
    from sqlalchemy import select, update

    from revoctl.core.db.models import GatewayKey

    if lock:
        touch = update(GatewayKey).where(GatewayKey.name == name).values(name=GatewayKey.name)
        await session.execute(touch)
    query = select(GatewayKey).where(GatewayKey.name == name)
    row = (await session.execute(query)).scalar_one_or_none()
    if row is None:
        raise NotFoundError(f"no gateway key named {name!r}")
    return row


def _event(name: str, action: str, actor: str, detail: dict[str, Any], at: datetime) -> Any:
    from revoctl.core.db.models import GatewayKeyEvent

    return GatewayKeyEvent(name=name, action=action, actor=actor, detail=detail, at=at)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _record(row: GatewayKey) -> KeyRecord:
    return KeyRecord(
        name=row.name,
        key_id=row.key_id,
        key_hash=row.key_hash,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        tier=row.tier,
        budget_added=row.budget_added or 0.0,
        budget_added_period=row.budget_added_period,
        previous_key_id=row.previous_key_id,
        previous_key_hash=row.previous_key_hash,
        previous_expires_at=row.previous_expires_at,
    )
