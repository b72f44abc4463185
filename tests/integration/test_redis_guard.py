"""The limiter on Redis under the `redis` breaker (issue 21): while an operator's trip holds
it open, ``failure_mode`` answers every check without a call to Redis; a reset hands the
checks back to Redis. In the CLI's role nothing is guarded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from revoctl.config import load_config
from revoctl.core import load_services
from revoctl.core._process import Role
from revoctl.core.breakers import CircuitBreaker

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PROBE_INTERVAL = 0.2
"""``[limits] probe_interval_seconds``: how soon a limiter whose store failed asks again."""


def write_config(tmp_path: Path, redis_url: str, prefix: str, *, guard: bool = True) -> Path:
    config = tmp_path / "revoctl.toml"
    config.write_text(
        f"""
[redis]
url = "{redis_url}"

[limits]
store = "redis"
key_prefix = "{prefix}rl:"
failure_mode = "closed"
probe_interval_seconds = {PROBE_INTERVAL}
[[limits.rules]]
name = "rpm"
requests = 1000
window_seconds = 60

[breakers]
store = "memory"
guard_own_calls = {"true" if guard else "false"}
poll_interval = 0.05
"""
    )
    return config


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.02)
    return False


async def test_failure_mode_answers_while_the_redis_breaker_is_tripped(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    config = load_config(write_config(tmp_path, redis_url, redis_prefix))
    async with load_services(config) as svc:
        assert (await svc.limiter.check_rate_limit("rpm", "caller")).allowed
        await svc.breakers.trip("redis", reason="redis maintenance")
        breaker = svc.breakers.get("redis")
        assert await wait_for(lambda: _state_is(breaker, "forced_open"), 2)
        denied = await svc.limiter.check_rate_limit("rpm", "caller")
        assert not denied.allowed  # failure_mode "closed" answered: Redis was not asked
        assert "redis" in (denied.reason or "")
        await svc.breakers.reset("redis")

        async def allowed() -> bool:
            return (await svc.limiter.check_rate_limit("rpm", "caller")).allowed

        assert await wait_for(allowed, 10 * PROBE_INTERVAL + 2)


async def _state_is(breaker: CircuitBreaker, name: str) -> bool:
    return breaker.state.name == name


async def test_without_the_guard_or_in_the_cli_the_trip_does_not_reach_the_limiter(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    for guard, role in ((False, Role.RUNTIME), (True, Role.CLI)):
        config = load_config(write_config(tmp_path, redis_url, redis_prefix, guard=guard))
        async with load_services(config, role=role) as svc:
            await svc.breakers.trip("redis", reason="redis maintenance")
            assert (await svc.limiter.check_rate_limit("rpm", "caller")).allowed
