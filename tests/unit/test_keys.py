"""Gateway keys: printed once, stored as a hash, checked in constant time, revoked everywhere."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from revoctl.core.db import DatabaseConfig, DatabaseManager
from revoctl.core.errors import NotFoundError, UsageError
from revoctl.core.keys import KEY_PATTERN, KeyStore, hash_key
from revoctl.runtime.keys import KeyRing


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.started = datetime.now(UTC)

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self.started + timedelta(seconds=self.now - 1000.0)


@pytest.fixture
async def store(revoctl_home: Path) -> Any:
    async with DatabaseManager(DatabaseConfig(), role="test") as db:
        yield KeyStore(db)


async def test_a_key_is_returned_once_and_only_its_hash_is_stored(
    store: KeyStore, revoctl_home: Path
) -> None:
    issued = await store.create("team-search", actor="ops@host")
    assert KEY_PATTERN.fullmatch(issued.key)
    with sqlite3.connect(revoctl_home / "revoctl.db") as conn:
        rows = conn.execute("SELECT name, key_id, key_hash FROM gateway_keys").fetchall()
    [(name, key_id, key_hash)] = rows
    assert name == "team-search" and key_id in issued.key
    assert key_hash == hash_key(issued.key)
    assert issued.key.encode() not in (revoctl_home / "revoctl.db").read_bytes()
    [record] = await store.list_keys()
    assert record.name == "team-search" and record.revoked_at is None


async def test_names_are_checked_and_unique(store: KeyStore) -> None:
    await store.create("a-key", actor="x")
    with pytest.raises(UsageError, match="exists"):
        await store.create("a-key", actor="x")
    with pytest.raises(UsageError, match="invalid key name"):
        await store.create("no spaces please", actor="x")
    with pytest.raises(UsageError, match="expires-in"):
        await store.create("b-key", expires_in=0, actor="x")
    with pytest.raises(NotFoundError):
        await store.revoke("nobody")


async def test_the_ring_verifies_refuses_and_follows_revocation(store: KeyStore) -> None:
    clock = Clock()
    ring = KeyRing(store, refresh_seconds=0.5, clock=clock, now=clock.wall)
    await ring.refresh()
    good = await store.create("good", actor="x")
    expired = await store.create("expired", expires_in=1, actor="x")
    clock.now += 1  # past the unknown-id pause: a key made since the last refresh is seen
    assert await ring.verify(good.key) == "good"
    forged = good.key[:-4] + ("AAAA" if not good.key.endswith("AAAA") else "BBBB")
    assert await ring.verify(forged) is None
    assert await ring.verify("rvk_nothing") is None
    assert await ring.verify("Bearer " + good.key) is None
    clock.now += 1.1  # past the expired key's second
    await ring.refresh()
    assert await ring.verify(expired.key) is None
    await store.revoke("good")
    assert await ring.verify(good.key) == "good"  # until the next refresh...
    await ring.refresh()
    assert await ring.verify(good.key) is None  # ...which every instance makes every 0.5 s


async def test_a_database_outage_keeps_the_last_view(store: KeyStore, monkeypatch) -> None:
    ring = KeyRing(store, refresh_seconds=0.5)
    issued = await store.create("k", actor="x")
    await ring.refresh()

    async def down() -> list[Any]:
        raise OSError("database down")

    monkeypatch.setattr(store, "list_keys", down)
    await ring.refresh()
    assert await ring.verify(issued.key) == "k"  # callers are not locked out
    assert "database down" in (ring.health()["error"] or "")
    assert ring.loaded  # what readiness asks: the keys were read once, so they are served


async def test_an_outage_is_logged_once_and_its_end_too(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ring = KeyRing(store, refresh_seconds=0.5)
    assert not ring.loaded
    read = store.list_keys

    async def down() -> list[Any]:
        raise OSError("database down")

    monkeypatch.setattr(store, "list_keys", down)
    for _ in range(5):  # every refresh_seconds while the database is away
        await ring.refresh()
    assert not ring.loaded
    monkeypatch.setattr(store, "list_keys", read)
    await ring.refresh()
    assert ring.loaded
    messages = [r.getMessage() for r in caplog.records if r.name == "revoctl.keys"]
    assert messages == [
        "gateway keys not refreshed (OSError: database down); the keys read last are served",
        "gateway keys refreshed again",
    ]


def test_keys_commands(cli: Any, revoctl_home: Path) -> None:
    created = cli("keys", "create", "team-a", "--expires-in", "3600", "-o", "json")
    assert created.exit_code == 0, created.stderr
    document = json.loads(created.stdout)
    assert set(document) == {"name", "key", "expires_at"} and document["name"] == "team-a"
    table = cli("key", "create", "team-b")
    assert table.exit_code == 0 and KEY_PATTERN.fullmatch(table.stdout.strip())
    assert "not shown again" in table.stderr
    listed = json.loads(cli("keys", "list", "-o", "json").stdout)
    assert [k["name"] for k in listed] == ["team-a", "team-b"]
    assert set(listed[0]) == {"name", "created_at", "expires_at", "revoked", "tier", "spend",
                              "budget", "budget_resets_at"}  # fmt: skip
    for text in (cli("keys", "list").stdout, cli("keys", "list", "-o", "yaml").stdout):
        assert document["key"] not in text and table.stdout.strip() not in text
    assert cli("keys", "revoke", "team-a").exit_code == 0
    assert [k["revoked"] for k in json.loads(cli("keys", "list", "-o", "json").stdout)] == [
        True,
        False,
    ]
    assert cli("keys", "revoke", "ghost").exit_code == 3
    assert cli("keys", "create", "team-b").exit_code == 2
    assert cli("keys", "create", "bad name").exit_code == 2
