"""The breaker store contract, on every store: memory, SQLite, PostgreSQL and Redis.

Compare-and-set lets exactly one of several concurrent writers win; the loser gets the
winner's record and the store's clock. History is newest first and bounded; process
reports expire; times are the store's clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from revoctl.core.breakers import BreakerStateStore, ProcessReport, SharedState, Transition, _shared
from tests.support.breakers import (
    ALL_BREAKER_STORES,
    Target,
    close_store,
    open_store,
    store_target,
)

pytestmark = pytest.mark.parametrize("kind", ALL_BREAKER_STORES)


@pytest.fixture
def target(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return store_target(kind, request, tmp_path)


@pytest.fixture
async def store(target: Target) -> AsyncIterator[BreakerStateStore]:
    opened, resource = await open_store(target, history_limit=10)
    yield opened
    await close_store(opened, resource)


async def test_an_empty_store_reads_its_clock_and_no_records(store: BreakerStateStore) -> None:
    snapshot = await store.read()
    assert snapshot.records == {}
    assert abs(snapshot.now - time.time()) < 5  # the server runs on this machine
    assert snapshot.record("openai_api") == SharedState("openai_api")


async def test_compare_and_set_creates_then_requires_the_version_read(
    store: BreakerStateStore,
) -> None:
    first = SharedState("openai_api", "open", version=1, opened_at=1.5, reason="3 failures")
    transition = Transition("openai_api", "closed", "open", "3 failures", "proc-a")
    written = await store.compare_and_set(first, transition)
    assert written.applied and written.current == first

    stale = SharedState("openai_api", "forced_open", version=1)
    lost = await store.compare_and_set(stale, None)
    assert not lost.applied
    assert lost.current == first
    assert abs(lost.now - time.time()) < 5

    second = SharedState("openai_api", "closed", version=2, generation=1)
    assert (await store.compare_and_set(second, None)).applied
    assert (await store.read()).records == {"openai_api": second}
    [entry] = await store.history("openai_api", 10)
    assert (entry.from_state, entry.to_state, entry.cause, entry.process) == (
        "closed",
        "open",
        "3 failures",
        "proc-a",
    )
    assert entry.at is not None and abs(entry.at - time.time()) < 5


async def test_of_concurrent_writers_of_one_version_exactly_one_wins(
    store: BreakerStateStore,
) -> None:
    writers = [SharedState("anthropic_api", "open", version=1, reason=f"w{i}") for i in range(8)]
    results = await asyncio.gather(*(store.compare_and_set(w, None) for w in writers))
    winners = [r for r in results if r.applied]
    assert len(winners) == 1
    assert all(r.current == winners[0].current for r in results)


async def test_the_trial_lease_grants_exactly_the_permits_under_contention(
    store: BreakerStateStore,
) -> None:
    opened = SharedState("deepseek_api", "open", version=1, opened_at=0.0, until=0.0)
    assert (await store.compare_and_set(opened, None)).applied
    decide = _shared.grant_trial(trials=3, lease=60, process="p")

    async def ask() -> bool:
        snapshot = await store.read()
        written = await _shared.write(store, decide, snapshot.record("deepseek_api"), snapshot.now)
        return written.applied

    granted = await asyncio.gather(*(ask() for _ in range(12)))
    assert sum(granted) == 3
    record = (await store.read()).record("deepseek_api")
    assert (record.state, record.trials_granted, record.episode) == ("half_open", 3, 1)
    [entry, *_] = await store.history("deepseek_api", 10)
    assert entry.to_state == "half_open"


async def test_history_is_newest_first_limited_and_bounded(store: BreakerStateStore) -> None:
    for i in range(15):
        await store.append_history(Transition("redis", "closed", "open", f"trip {i}", "p", "local"))
    entries = await store.history("redis", 100)
    assert [e.cause for e in entries] == [f"trip {i}" for i in range(14, 4, -1)]  # 10 kept
    assert [e.cause for e in await store.history("redis", 2)] == ["trip 14", "trip 13"]
    assert entries[0].scope == "local"
    assert await store.history("database", 10) == []


async def test_process_reports_are_kept_for_their_ttl(store: BreakerStateStore) -> None:
    ttl = 0.5
    await store.report(ProcessReport("proc-a", "runtime", {"openai_api": {"state": "open"}}), ttl)
    await store.report(ProcessReport("proc-b", "runtime", {"openai_api": {"state": "closed"}}), 60)
    now, reports = await store.fleet()
    assert {r.process: r.breakers["openai_api"]["state"] for r in reports} == {
        "proc-a": "open",
        "proc-b": "closed",
    }
    assert all(r.reported_at is not None and abs(r.reported_at - now) < 5 for r in reports)

    deadline = time.monotonic() + ttl * 20
    while time.monotonic() < deadline:
        _, reports = await store.fleet()
        if [r.process for r in reports] == ["proc-b"]:
            break
        await asyncio.sleep(ttl / 5)
    assert [r.process for r in reports] == ["proc-b"]


async def test_changes_are_pushed_where_the_store_can(kind: str, store: BreakerStateStore) -> None:
    feed = store.changes()
    if kind in ("sqlite", "postgres"):
        assert feed is None  # SQL has no push: processes poll
        return
    assert feed is not None
    first = asyncio.ensure_future(anext(feed))
    await asyncio.sleep(0.2)  # let the subscription settle
    await store.compare_and_set(SharedState("database", "forced_open", version=1), None)
    assert await asyncio.wait_for(first, 5) == "database"
    await feed.aclose()  # type: ignore[attr-defined]
