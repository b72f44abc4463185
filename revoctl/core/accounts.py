"""`Accounts`: a gateway key's life with its tier and its spend, one core call per action.

The CLI (``revoctl keys ...``) and the admin API (``/admin/keys...``) both act through
this component (``svc.accounts``), so a key made over HTTP and one made at the terminal
are the same thing, checked the same way and audited alike. It sits above the key store
(`revoctl.core.keys.KeyStore`: the rows and their events) and the rate limiter (the spend
of each budget period, which the gateway reserves and settles there), and knows the
configured ``[tiers.NAME]``:

- a tier named here must be configured (a usage error lists those that are);
- a key's spend is its budget counter for the current period (`budget_window`: periods
  start at the key's creation and follow its tier's ``budget_period``), read from the
  limit store under the key's name; a key with no budget has no period and no spend;
- a top-up (``keys budget NAME --add X``) raises the current period's cap only.

Every answer is the CONTRACT's JSON document, timestamps ISO 8601 in UTC, so the CLI and
the API render them as they are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from revoctl.core.errors import UsageError

if TYPE_CHECKING:
    from revoctl.core.gateway.settings import TierConfig
    from revoctl.core.keys import BudgetWindow, IssuedKey, KeyRecord, KeyStore
    from revoctl.core.limits import RateLimiter


class Accounts:
    """Gateway keys with their tiers, budgets and spend (``svc.accounts``)."""

    def __init__(
        self,
        keys: KeyStore,
        limiter: RateLimiter,
        tiers: Mapping[str, TierConfig],
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._keys = keys
        self._limiter = limiter
        self._tiers = dict(tiers)
        self._now = now

    async def close(self) -> None:
        """Nothing of its own: the keys and the limiter are components of their own."""

    async def create(
        self,
        name: str,
        *,
        tier: str | None = None,
        expires_in: float | None = None,
        actor: str,
    ) -> dict[str, Any]:
        """A new key, printed once: ``{"name", "key", "expires_at"}``.

        :raises UsageError: invalid or taken name, unknown tier, bad ``expires_in``.
        """
        self._checked_tier(tier)
        issued = await self._keys.create(name, tier=tier, expires_in=expires_in, actor=actor)
        return _issued(issued)

    async def list_keys(self) -> list[dict[str, Any]]:
        """Every key, never the key: ``{"name", "created_at", "expires_at", "revoked", "tier",
        "spend", "budget", "budget_resets_at"}``, oldest first.

        :raises BackendUnavailableError: the database or the limit store is unreachable.
        """
        records = await self._keys.list_keys()
        now = self._now()
        return list(await asyncio.gather(*(self._entry(record, now) for record in records)))

    async def spend(self, name: str) -> dict[str, Any]:
        """``name``'s current budget period: ``{"name", "tier", "spend", "budget",
        "period_start", "resets_at"}`` (spend and the period null without a budget).

        :raises NotFoundError: no key has that name.
        """
        return await self._spend_of(await self._keys.get(name))

    async def update(self, name: str, *, tier: str, actor: str) -> dict[str, Any]:
        """Move ``name`` to ``tier``; its ``keys list`` entry.

        :raises NotFoundError: no key has that name.
        :raises UsageError: the tier is not configured.
        """
        self._checked_tier(tier)
        record = await self._keys.update(name, tier=tier, actor=actor)
        return await self._entry(record, self._now())

    async def rotate(self, name: str, *, overlap_seconds: float = 0, actor: str) -> dict[str, Any]:
        """A new key for ``name``, printed once (``{"name", "key", "expires_at"}``); the old
        one works for ``overlap_seconds`` more.

        :raises NotFoundError: no key has that name.
        :raises UsageError: the key is revoked or the overlap is out of range.
        """
        return _issued(await self._keys.rotate(name, overlap_seconds=overlap_seconds, actor=actor))

    async def add_budget(self, name: str, amount: float, *, actor: str) -> dict[str, Any]:
        """Raise ``name``'s cap for the current period by ``amount``; its `spend` document.

        :raises NotFoundError: no key has that name.
        :raises UsageError: ``amount`` is not positive, or the key's tier has no budget.
        """
        if not amount > 0:
            raise UsageError(f"--add must be more than 0, got {amount:g}")
        record = await self._keys.get(name)
        window = self._window(record, self._now())
        if window is None:
            raise UsageError(
                f"the key {name!r} has no budget to top up: its tier "
                f"({record.tier or 'none'}) sets no budget"
            )
        updated = await self._keys.add_budget(name, amount, window.period, actor=actor)
        return await self._spend_of(updated)

    async def revoke(self, name: str, *, actor: str) -> dict[str, Any]:
        """Revoke ``name``: ``{"name", "revoked", "revoked_at"}``.

        :raises NotFoundError: no key has that name.
        """
        record = await self._keys.revoke(name, actor=actor)
        return {"name": record.name, "revoked": True, "revoked_at": _time(record.revoked_at)}

    def _checked_tier(self, tier: str | None) -> None:
        """:raises UsageError: ``tier`` is not a configured ``[tiers.NAME]``."""
        if tier is not None and tier not in self._tiers:
            configured = ", ".join(sorted(self._tiers)) or "none: add [tiers.NAME] to the config"
            raise UsageError(f"unknown tier {tier!r}; configured tiers: {configured}")

    def _window(self, record: KeyRecord, now: datetime) -> BudgetWindow | None:
        from revoctl.core.keys import budget_window

        tier = self._tiers.get(record.tier) if record.tier else None
        return budget_window(record, tier, now) if tier is not None else None

    async def _spent(
        self, record: KeyRecord, now: datetime
    ) -> tuple[BudgetWindow | None, float | None]:
        """``record``'s budget window at ``now`` and its spend in it (None, None: no budget)."""
        window = self._window(record, now)
        if window is None:
            return None, None
        return window, await self._limiter.spent(record.name, window.period)

    async def _entry(self, record: KeyRecord, now: datetime) -> dict[str, Any]:
        """``record``'s `list_keys` entry."""
        window, spend = await self._spent(record, now)
        return {
            "name": record.name,
            "created_at": _time(record.created_at),
            "expires_at": _time(record.expires_at),
            "revoked": record.revoked_at is not None,
            "tier": record.tier,
            "spend": spend,
            "budget": window.limit if window else None,
            "budget_resets_at": _time(window.resets_at) if window else None,
        }

    async def _spend_of(self, record: KeyRecord) -> dict[str, Any]:
        window, spend = await self._spent(record, self._now())
        return {
            "name": record.name,
            "tier": record.tier,
            "spend": spend,
            "budget": window.limit if window else None,
            "period_start": _time(window.start) if window else None,
            "resets_at": _time(window.resets_at) if window else None,
        }


def _issued(issued: IssuedKey) -> dict[str, Any]:
    return {"name": issued.name, "key": issued.key, "expires_at": _time(issued.expires_at)}


def _time(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None
