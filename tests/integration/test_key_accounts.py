"""Gateway keys with tiers, budgets, spend and rotation (`revoctl.core.accounts` over the key
store and the limiter), on SQLite and a real PostgreSQL: what the CLI and the admin API
both call. Every change leaves its ``gateway_key_events`` row; no row holds a key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from revoctl.core.accounts import Accounts
from revoctl.core.db import DatabaseConfig, DatabaseManager, upgrade
from revoctl.core.db.models import GatewayKey, GatewayKeyEvent
from revoctl.core.errors import NotFoundError, UsageError
from revoctl.core.gateway.settings import TierConfig
from revoctl.core.keys import KeyStore, hash_key
from revoctl.core.limits import LimitsConfig, RateLimiter
from revoctl.core.limits.reservations import BudgetCharge, Reservation, to_nano
from revoctl.core.limits.stores.memory import MemoryLimitStore

TIERS = {
    "free": TierConfig(budget=2.0, budget_period="1d"),
    "pro": TierConfig(budget=50.0, budget_period="30d"),
    "internal": TierConfig(),
}
DAY = 86400


class Wall:
    """The accounts' clock, moved by the test (the keys' creation time is the real one)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, revoctl_home: Path) -> DatabaseConfig:
    if request.param == "sqlite":
        return DatabaseConfig()
    return DatabaseConfig(url=request.getfixturevalue("postgres_url"))


@pytest.fixture
async def db(database: DatabaseConfig) -> AsyncIterator[DatabaseManager]:
    async with DatabaseManager(database, role="test") as manager:
        await upgrade(manager)
        yield manager


@pytest.fixture
async def limiter() -> AsyncIterator[RateLimiter]:
    async with RateLimiter(LimitsConfig(store="memory"), store=MemoryLimitStore()) as lim:
        yield lim


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def accounts(db: DatabaseManager, limiter: RateLimiter, wall: Wall) -> Accounts:
    return Accounts(KeyStore(db), limiter, TIERS, now=wall)


async def events(db: DatabaseManager, name: str) -> list[GatewayKeyEvent]:
    async def read(session: Any) -> list[GatewayKeyEvent]:
        query = select(GatewayKeyEvent).where(GatewayKeyEvent.name == name)
        return list((await session.execute(query.order_by(GatewayKeyEvent.id))).scalars())

    return await db.transaction(read)


async def row(db: DatabaseManager, name: str) -> GatewayKey:
    async def read(session: Any) -> GatewayKey:
        query = select(GatewayKey).where(GatewayKey.name == name)
        return (await session.execute(query)).scalar_one()

    return await db.transaction(read)


async def charge(limiter: RateLimiter, name: str, period: int, amount: float) -> None:
    """What the gateway reserves for a request of ``name``'s (the budget part alone)."""
    budget = BudgetCharge(name, period, to_nano(1e6, up=False), to_nano(amount, up=True), DAY)
    [reserved] = await limiter.reserve([Reservation(name, budget=budget)])
    assert reserved.allowed


async def test_spend_is_the_limit_stores_counter_for_the_keys_current_period(
    accounts: Accounts, limiter: RateLimiter, wall: Wall
) -> None:
    created = await accounts.create("team-a", tier="free", actor="ops@host")
    assert set(created) == {"name", "key", "expires_at"} and created["expires_at"] is None
    await charge(limiter, "team-a", 0, 0.75)
    spend = await accounts.spend("team-a")
    assert spend["spend"] == pytest.approx(0.75) and spend["budget"] == 2.0
    assert spend["tier"] == "free" and set(spend) == {
        "name", "tier", "spend", "budget", "period_start", "resets_at"
    }  # fmt: skip
    start = datetime.fromisoformat(spend["period_start"])
    assert datetime.fromisoformat(spend["resets_at"]) - start == timedelta(days=1)
    [listed] = await accounts.list_keys()
    assert (
        listed["spend"] == pytest.approx(0.75) and listed["budget_resets_at"] == spend["resets_at"]
    )

    wall.offset = timedelta(days=1, seconds=1)  # the next period: nothing spent in it yet
    later = await accounts.spend("team-a")
    assert later["spend"] == 0 and later["period_start"] == spend["resets_at"]


async def test_a_top_up_raises_this_periods_cap_only(
    accounts: Accounts, db: DatabaseManager, wall: Wall
) -> None:
    await accounts.create("team-a", tier="free", actor="ops@host")
    assert (await accounts.add_budget("team-a", 1.5, actor="ops@host"))["budget"] == 3.5
    assert (await accounts.add_budget("team-a", 0.5, actor="finance@host"))["budget"] == 4.0
    wall.offset = timedelta(days=1, seconds=1)
    assert (await accounts.spend("team-a"))["budget"] == 2.0  # the next period starts afresh
    assert (await accounts.add_budget("team-a", 1.0, actor="ops@host"))["budget"] == 3.0
    stored = await row(db, "team-a")
    assert (stored.budget_added, stored.budget_added_period) == (1.0, 1)
    audited = [(e.action, e.actor, e.detail) for e in await events(db, "team-a")]
    assert audited[1:] == [
        ("budget_added", "ops@host", {"amount": 1.5, "period": 0, "budget_added": 1.5}),
        ("budget_added", "finance@host", {"amount": 0.5, "period": 0, "budget_added": 2.0}),
        ("budget_added", "ops@host", {"amount": 1.0, "period": 1, "budget_added": 1.0}),
    ]


async def test_tiers_are_checked_against_the_configured_ones(accounts: Accounts) -> None:
    with pytest.raises(
        UsageError, match="unknown tier 'gold'; configured tiers: free, internal, pro"
    ):
        await accounts.create("team-a", tier="gold", actor="x")
    await accounts.create("team-a", tier="internal", actor="x")
    with pytest.raises(UsageError, match="unknown tier"):
        await accounts.update("team-a", tier="gold", actor="x")
    with pytest.raises(UsageError, match="no budget"):
        await accounts.add_budget("team-a", 1.0, actor="x")
    with pytest.raises(UsageError, match="more than 0"):
        await accounts.add_budget("team-a", 0, actor="x")
    with pytest.raises(NotFoundError):
        await accounts.spend("nobody")
    entry = await accounts.update("team-a", tier="pro", actor="x")
    assert entry["tier"] == "pro" and entry["budget"] == 50.0 and entry["spend"] == 0
    plain = await accounts.create("team-b", actor="x")  # no tier: the gateway's own rules
    assert plain["name"] == "team-b"
    spend = await accounts.spend("team-b")
    assert spend == {"name": "team-b", "tier": None, "spend": None, "budget": None,
                     "period_start": None, "resets_at": None}  # fmt: skip


async def test_rotation_keeps_the_old_key_as_previous_until_the_overlap_ends(
    accounts: Accounts, db: DatabaseManager, limiter: RateLimiter
) -> None:
    first = await accounts.create("team-a", tier="pro", actor="ops@host")
    await charge(limiter, "team-a", 0, 3.0)
    before = await row(db, "team-a")
    rotated = await accounts.rotate("team-a", overlap_seconds=3600, actor="ops@host")
    assert set(rotated) == {"name", "key", "expires_at"} and rotated["key"] != first["key"]
    after = await row(db, "team-a")
    assert after.key_hash == hash_key(rotated["key"]) and after.key_id in rotated["key"]
    assert (after.previous_key_id, after.previous_key_hash) == (before.key_id, before.key_hash)
    assert after.previous_expires_at is not None
    overlap = after.previous_expires_at - datetime.now(UTC)
    assert timedelta(seconds=3590) < overlap <= timedelta(seconds=3600)
    assert (after.created_at, after.tier) == (before.created_at, "pro")
    assert (await accounts.spend("team-a"))["spend"] == pytest.approx(3.0)  # spend goes on

    again = await accounts.rotate("team-a", actor="ops@host")  # overlap 0: stops at once
    last = await row(db, "team-a")
    assert last.previous_key_hash == after.key_hash and last.key_hash == hash_key(again["key"])
    assert last.previous_expires_at is not None and last.previous_expires_at <= datetime.now(UTC)

    await accounts.revoke("team-a", actor="ops@host")
    await accounts.revoke("team-a", actor="ops@host")  # again: harmless, not audited again
    with pytest.raises(UsageError, match="revoked"):
        await accounts.rotate("team-a", actor="ops@host")
    with pytest.raises(UsageError, match="overlap"):
        await accounts.rotate("team-a", overlap_seconds=-1, actor="ops@host")
    audited = await events(db, "team-a")
    assert [e.action for e in audited] == ["created", "rotated", "rotated", "revoked"]
    assert audited[1].detail["previous_key_id"] == before.key_id
    text = json.dumps([e.detail for e in audited])
    for secret in (first["key"], rotated["key"], again["key"], before.key_hash, after.key_hash):
        assert secret not in text
