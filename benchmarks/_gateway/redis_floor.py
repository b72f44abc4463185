"""What the two Redis round trips of a protected request cost by themselves, measured in
this process against the run's Redis: the floor under the protections' cost.

Three loops, each ``CALLS`` requests on ``CONCURRENCY`` tasks, CPU per request of this
process and of ``redis-server`` (both share the 2 cores with the gateway in a capacity run):

* ``raw``: the same two EVALSHA, packed once, on one connection of a minimal client (an
  asyncio protocol and hiredis's reader, the tasks' calls pipelined): what the socket and
  the protocol cost, the floor of any client;
* ``bare``: two EVALSHA of a script that returns at once, with as many keys and arguments as
  a reservation and a settlement, on a plain ``redis.asyncio.Redis`` (hiredis, the same
  ``socket_timeout``): what redis-py and the socket cost, whatever the store does;
* ``store``: revoctl's `RedisLimitStore` reserving and settling the bench tier's charge (two
  rules, the budget, a slot) as a gateway request does, without the limiter around it;
* ``limiter``: the same through `RateLimiter.reserve` and `RateLimiter.settle` (its
  fail-soft timeout, tallies, the lease keeper).

Against the gateway's CPU per request with protections off, they bound the on/off ratio a
gateway on this client can reach: ``off / (off + floor)``.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from typing import Any

from .client import tree_cpu

CALLS = 3000
CONCURRENCY = 16
KEYS = 4
ARGS = 24


@dataclass
class Floor:
    label: str
    client_us: float
    redis_us: float

    @property
    def total_us(self) -> float:
        return self.client_us + self.redis_us


async def _loop(step: object, calls: int) -> None:
    async def worker(n: int) -> None:
        for _ in range(n):
            await step()  # type: ignore[operator]

    await asyncio.gather(*(worker(calls // CONCURRENCY) for _ in range(CONCURRENCY)))


async def _measured(label: str, step: object, redis_pid: int, calls: int) -> Floor:
    await _loop(step, CONCURRENCY * 20)  # warm: connections, scripts loaded
    cpu, server = time.process_time(), tree_cpu((redis_pid,))
    await _loop(step, calls)
    done = calls // CONCURRENCY * CONCURRENCY
    return Floor(
        label,
        (time.process_time() - cpu) / done * 1e6,
        (tree_cpu((redis_pid,)) - server) / done * 1e6,
    )


class _Raw(asyncio.Protocol):
    """One connection: a packed command out, its reply (hiredis) to the oldest waiter."""

    def __init__(self) -> None:
        import hiredis

        self.reader = hiredis.Reader()
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.waiters.popleft().set_result(reply)

    def call(self, packed: bytes) -> asyncio.Future[Any]:
        assert self.transport is not None
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        self.transport.write(packed)
        return waiter


def _packed(*parts: str | bytes) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out += [f"${len(data)}\r\n".encode(), data, b"\r\n"]
    return b"".join(out)


async def _floors(url: str, redis_pid: int, prefix: str, calls: int) -> list[Floor]:
    import redis.asyncio as aioredis

    from revoctl.core.limits import RateLimiter
    from revoctl.core.limits.reservations import (
        BudgetCharge,
        BudgetSettlement,
        Reservation,
        RuleCharge,
        Settlement,
        SlotCharge,
        SlotRelease,
    )
    from revoctl.core.limits.settings import LimitsConfig, RateLimitRule
    from revoctl.core.limits.stores.redis import RedisLimitStore
    from revoctl.core.redis import RedisConfig, open_redis

    floors = []
    plain = aioredis.Redis.from_url(url, socket_timeout=2.0)
    script = plain.register_script("return 'ok'")
    keys = [f"{prefix}floor:{{bench}}:{n}" for n in range(KEYS)]
    args = [f"{n * 7919}" for n in range(ARGS)]

    async def bare() -> None:
        await script(keys=keys, args=args)
        await script(keys=keys, args=args)

    floors.append(await _measured("bare redis-py: 2 x EVALSHA", bare, redis_pid, calls))
    packed = _packed("EVALSHA", script.sha, str(KEYS), *keys, *args)
    host, port = url.removeprefix("redis://").split("/", 1)[0].split(":")
    _, raw = await asyncio.get_running_loop().create_connection(_Raw, host, int(port))

    async def minimal() -> None:
        await raw.call(packed)
        await raw.call(packed)

    floors.insert(0, await _measured("minimal client: 2 x EVALSHA", minimal, redis_pid, calls))
    assert raw.transport is not None
    raw.transport.close()
    await plain.aclose()

    requests = RateLimitRule(
        name="bench_requests", requests=10_000_000, window_seconds=60, scope="per_api_key"
    )
    tokens = RateLimitRule(
        name="bench_tokens", requests=1_000_000_000, window_seconds=60,
        algorithm="sliding_window", scope="per_api_key",
    )  # fmt: skip
    config = LimitsConfig(store="redis", key_prefix=f"{prefix}floor:", rules=[requests, tokens])
    client = await open_redis(RedisConfig(url=url))
    store = RedisLimitStore(client, RedisConfig(url=url), prefix=f"{prefix}floor:")
    limiter = RateLimiter(config, store=store)

    def reservation() -> Reservation:
        return Reservation(
            "bench",
            (RuleCharge(requests, "bench", 1), RuleCharge(tokens, "bench", 70)),
            BudgetCharge("bench", 0, 10**18, 45_000, 5_184_000.0),
            SlotCharge("bench", 1000, limiter.new_lease()),
        )

    def settlement(taken: Reservation) -> Settlement:
        assert taken.slot is not None
        return Settlement(
            "bench",
            (RuleCharge(tokens, "bench", 60),),
            BudgetSettlement("bench", 0, -40_000, 5_184_000.0),
            SlotRelease("bench", taken.slot.lease),
        )

    async def stored() -> None:
        taken = reservation()
        await store.reserve(taken, 15.0)
        await store.settle(settlement(taken))

    async def limited() -> None:
        taken = reservation()
        await limiter.reserve([taken])
        await limiter.settle([settlement(taken)])

    floors.append(await _measured("RedisLimitStore: reserve + settle", stored, redis_pid, calls))
    floors.append(await _measured("RateLimiter: reserve + settle", limited, redis_pid, calls))
    await limiter.close()
    return floors


def redis_floor(url: str, redis_pid: int, prefix: str, calls: int = CALLS) -> list[Floor]:
    return asyncio.run(_floors(url, redis_pid, prefix, calls))
