"""Failure modes against a real Redis stopped and restarted mid-run (a private ``redis-server``):
callers always get an answer, the outage is logged, counted and shown by health, the store
is probed once per interval, and decisions go back to it as soon as it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from revoctl.core._stores import StoreContext
from revoctl.core.limits import LimitsConfig, RateLimiter, RateLimitResult, RateLimitRule
from revoctl.core.limits.stores import open_limit_store
from revoctl.core.redis import RedisConfig
from tests.support.redis_servers import RedisServer, private_server

pytestmark = pytest.mark.redis

RULE = RateLimitRule(name="api", requests=1000, window_seconds=60)
TIMEOUT = 0.5
PROBE = 0.2
TASKS = 20


async def open_limiter(server: RedisServer, mode: str) -> RateLimiter:
    config = LimitsConfig(
        store="redis",
        failure_mode=mode,
        timeout_seconds=TIMEOUT,
        probe_interval_seconds=PROBE,
        rules=(RULE,),
    )
    redis = RedisConfig(url=server.url, socket_timeout=TIMEOUT, connect_timeout=TIMEOUT)

    async def open_store():  # type: ignore[no-untyped-def]
        return await open_limit_store(config, StoreContext(redis, db=lambda: None))  # type: ignore[arg-type,return-value]

    return RateLimiter(config, open_store=open_store)


class Traffic:
    """``TASKS`` tasks checking in a loop, recording every answer, until stopped."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self.results: list[RateLimitResult] = []
        self.running = True
        self.tasks = [asyncio.create_task(self._run()) for _ in range(TASKS)]

    async def _run(self) -> None:
        while self.running:
            self.results.append(await self.limiter.check_rate_limit("api", "k"))
            await asyncio.sleep(0.005)

    async def until(self, predicate, seconds: float) -> None:  # type: ignore[no-untyped-def]
        """Wait until the newest answer satisfies ``predicate`` (bounded by ``seconds``)."""
        async with asyncio.timeout(seconds):
            while not (self.results and predicate(self.results[-1])):
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.running = False
        await asyncio.gather(*self.tasks)  # re-raises anything a check raised


def from_store(result: RateLimitResult) -> bool:
    return result.reason is None


def failing(result: RateLimitResult) -> bool:
    return result.reason is not None and "store unavailable" in result.reason


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with private_server() as started:
        yield started


# Detecting the outage takes at most one timeout per task; the way back at most one probe
# interval plus a connection attempt; everything else is margin for a loaded machine.
DETECT = TIMEOUT * 4 + 5
RECOVER = PROBE + TIMEOUT * 4 + 5


async def test_open_admits_through_an_outage_and_returns_to_the_store(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="revoctl.limits")
    limiter = await open_limiter(server, "open")
    traffic = Traffic(limiter)
    await traffic.until(from_store, DETECT)

    server.stop()
    await traffic.until(failing, DETECT)
    outage_started = len(traffic.results)
    health = await limiter.health_check(budget=2)
    assert health["status"] == "degraded"
    assert "failure_mode open answers for it" in health["reason"]
    await asyncio.sleep(PROBE * 5)  # let the outage run: many decisions, few probes
    during = traffic.results[outage_started:]
    assert during and all(r.allowed and failing(r) for r in during)

    server.start()  # the same port, an empty server: the scripts must be loaded again
    await traffic.until(from_store, RECOVER)
    await traffic.stop()

    counts = limiter.decisions()["api"]
    assert counts["failed_open"] >= len(during)
    assert counts["allowed"] > 0 and counts["failed_closed"] == 0
    report = await limiter.health_check()
    assert report["status"] == "healthy"
    # One wave of in-flight calls when the server went, then at most one probe per interval.
    elapsed_intervals = 5 + (RECOVER + DETECT) / PROBE
    assert report["store_failures"] <= TASKS + elapsed_intervals
    messages = [r.getMessage() for r in caplog.records if r.name == "revoctl.limits"]
    assert any("rate-limit store failing" in m and "failure_mode open" in m for m in messages)
    assert any("rate-limit store is back" in m for m in messages)
    await limiter.close()


async def test_closed_denies_through_an_outage_with_a_retry_after(server: RedisServer) -> None:
    limiter = await open_limiter(server, "closed")
    traffic = Traffic(limiter)
    await traffic.until(from_store, DETECT)
    server.stop()
    await traffic.until(failing, DETECT)
    denied = traffic.results[-1]
    assert not denied.allowed and denied.retry_after == PROBE and denied.remaining == 0
    server.start()
    await traffic.until(from_store, RECOVER)
    await traffic.stop()
    assert limiter.decisions()["api"]["failed_closed"] > 0
    assert traffic.results[-1].allowed
    await limiter.close()


def test_the_operator_sees_the_outage_as_exit_4(cli, server: RedisServer, tmp_path) -> None:
    config = tmp_path / "revoctl.toml"
    config.write_text(
        f'[limits]\nstore = "redis"\n[redis]\nurl = "{server.url}"\nconnect_timeout = 0.5\n'
        '[[limits.rules]]\nname = "api"\nrequests = 5\nwindow_seconds = 60\n'
    )
    assert cli("--config", str(config), "limits", "test", "api", "--key", "a").exit_code == 0
    server.stop()
    result = cli("--config", str(config), "limits", "test", "api", "--key", "a")
    assert result.exit_code == 4
    assert result.stderr.startswith(f"error: cannot reach Redis at {server.url}")
