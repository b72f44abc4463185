"""`RateLimiter.check_rate_limit` against `limits` and `pyrate-limiter`, in one run.

* memory: decisions per second on one hot key and on many keys (a new key every call,
  20 000 in rotation), ours (``await limiter.check_rate_limit``) against `limits`'
  MemoryStorage strategies, async (``limits.aio``, the same call style) and sync, and
  `pyrate-limiter`'s in-memory buckets;
* Redis (a private ``redis-server`` started for the run, so that nobody else's traffic is
  counted): sequential and with 32 concurrent tasks, ours against `limits` ``hit`` and
  ``hit`` + ``get_window_stats`` (the information our one call returns), `pyrate-limiter`'s
  RedisBucket, and the floors: PING and an EVALSHA of ``return 1``. Redis commands per
  decision are counted with MONITOR (commands a script runs inside Redis are not round trips).

Prints decisions per second and the ratios ours / theirs (above 1: ours is faster).

    python benchmarks/limits_bench.py [--memory-calls 40000] [--redis-calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.support

import limits
import limits.aio.storage
import limits.aio.strategies
import limits.storage
import limits.strategies
import pyrate_limiter as pyrate
from redis.asyncio import Redis

from revoctl.core.limits import (
    LimitsConfig,
    MemoryLimitStore,
    RateLimiter,
    RateLimitRule,
    RedisLimitStore,
)
from revoctl.core.redis import RedisConfig, open_redis
from tests.support.redis_servers import CommandCounter, RedisServer, free_port

BIG = 10**9
"""Every check is allowed (and so writes): the more expensive path of each library."""
KEYS = 20_000
CONCURRENCY = 32
RUNS = 3

ALGORITHMS = {
    "token_bucket": "ours token_bucket",
    "sliding_window": "ours sliding_window",
    "fixed_window": "ours fixed_window",
}


def rule(algorithm: str) -> RateLimitRule:
    return RateLimitRule(name=algorithm, requests=BIG, window_seconds=60, algorithm=algorithm)


def key_of(hot: bool) -> Callable[[int], str]:
    names = [f"user-{i}" for i in range(KEYS)]
    return (lambda i: "hot") if hot else (lambda i: names[i % KEYS])


async def per_second_async(
    fn: Callable[[str], Awaitable[object]], calls: int, hot: bool, runs: int = RUNS
) -> float:
    """Best of ``runs`` runs of ``calls`` awaited decisions, in decisions per second."""
    key = key_of(hot)
    best = 0.0
    for _ in range(runs):
        start = time.perf_counter()
        for i in range(calls):
            await fn(key(i))
        best = max(best, calls / (time.perf_counter() - start))
    return best


def per_second_sync(fn: Callable[[str], object], calls: int, hot: bool) -> float:
    key = key_of(hot)
    best = 0.0
    for _ in range(RUNS):
        start = time.perf_counter()
        for i in range(calls):
            fn(key(i))
        best = max(best, calls / (time.perf_counter() - start))
    return best


async def concurrent_per_second(fn: Callable[[str], Awaitable[object]], calls: int) -> float:
    """``calls`` decisions on one key from `CONCURRENCY` tasks, in decisions per second."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await fn("hot")

    start = time.perf_counter()
    await asyncio.gather(*(worker(calls // CONCURRENCY) for _ in range(CONCURRENCY)))
    return (calls // CONCURRENCY * CONCURRENCY) / (time.perf_counter() - start)


def table(title: str, rows: list[tuple[str, str, float | None, float | None]]) -> None:
    print(title)
    print(f"  {'implementation':44} {'style':6} {'hot key/s':>11} {'many keys/s':>12}")
    for name, style, hot, many in rows:
        cells = [f"{v:11,.0f}" if v else f"{'-':>11}" for v in (hot, many)]
        print(f"  {name:44} {style:6} {cells[0]} {cells[1]:>12}")


def ratios(pairs: list[tuple[str, float, str, float]]) -> None:
    for ours_name, ours, theirs_name, theirs in pairs:
        print(f"  {ours_name:28} / {theirs_name:44} = {ours / theirs:5.2f}x")


# ------------------------------------------------------------------ memory


async def memory(calls: int) -> None:
    rows: list[tuple[str, str, float | None, float | None]] = []
    ours: dict[str, tuple[float, float]] = {}
    for algorithm, label in ALGORITHMS.items():
        limiter = RateLimiter(
            LimitsConfig(store="memory", rules=(rule(algorithm),)), store=MemoryLimitStore()
        )
        check = functools.partial(limiter.check_rate_limit, algorithm)
        hot = await per_second_async(check, calls, True)
        many = await per_second_async(check, calls, False)
        ours[algorithm] = (hot, many)
        rows.append((label, "async", hot, many))

    item = limits.RateLimitItemPerMinute(BIG)
    theirs: dict[str, tuple[float, float]] = {}
    for strategy in ("FixedWindow", "SlidingWindowCounter", "MovingWindow"):
        aio = getattr(limits.aio.strategies, f"{strategy}RateLimiter")(
            limits.aio.storage.MemoryStorage()
        )
        hit = functools.partial(aio.hit, item)
        hot = await per_second_async(hit, calls, True)
        many = await per_second_async(hit, calls, False)
        theirs[f"limits.aio {strategy}"] = (hot, many)
        rows.append((f"limits.aio {strategy}RateLimiter", "async", hot, many))
        sync = getattr(limits.strategies, f"{strategy}RateLimiter")(limits.storage.MemoryStorage())
        sync_hit = functools.partial(sync.hit, item)
        hot = per_second_sync(sync_hit, calls, True)
        many = per_second_sync(sync_hit, calls, False)
        theirs[f"limits {strategy}"] = (hot, many)
        rows.append((f"limits {strategy}RateLimiter", "sync", hot, many))

    rate = [pyrate.Rate(BIG, pyrate.Duration.MINUTE)]
    log_limiter = pyrate.Limiter(pyrate.InMemoryBucket(rate))
    hot = per_second_sync(lambda k: log_limiter.try_acquire(k, blocking=False), calls, True)
    theirs["pyrate InMemoryBucket"] = (hot, hot)
    rows.append(("pyrate-limiter InMemoryBucket (one bucket)", "sync", hot, None))
    state_limiter = pyrate.Limiter(
        pyrate.StateBucket(rate, algorithm=pyrate.TokenBucket(), store=pyrate.InMemoryStateStore())
    )
    hot = per_second_sync(lambda k: state_limiter.try_acquire(k, blocking=False), calls, True)
    theirs["pyrate StateBucket TokenBucket"] = (hot, hot)
    rows.append(("pyrate-limiter StateBucket TokenBucket", "sync", hot, None))

    table(f"memory: decisions per second, best of {RUNS} x {calls} calls", rows)
    print("  ratios, same call style (async/async), hot key | many keys:")
    for mine, other in (
        ("fixed_window", "limits.aio FixedWindow"),
        ("sliding_window", "limits.aio SlidingWindowCounter"),
        ("sliding_window", "limits.aio MovingWindow"),
        ("token_bucket", "limits.aio MovingWindow"),
    ):
        h, m = (ours[mine][i] / theirs[other][i] for i in (0, 1))
        print(f"    ours {mine:15} / {other:32} = {h:5.2f}x | {m:5.2f}x")
    print("  ratios, our async call against their sync call, hot key | many keys:")
    for mine, other in (
        ("fixed_window", "limits FixedWindow"),
        ("sliding_window", "limits SlidingWindowCounter"),
        ("token_bucket", "pyrate StateBucket TokenBucket"),
        ("sliding_window", "pyrate InMemoryBucket"),
    ):
        h, m = (ours[mine][i] / theirs[other][i] for i in (0, 1))
        print(f"    ours {mine:15} / {other:32} = {h:5.2f}x | {m:5.2f}x")


# ------------------------------------------------------------------ Redis


async def commands_per_decision(
    port: int, client: Redis, fn: Callable[[str], Awaitable[object]], decisions: int = 200
) -> tuple[float, float, str]:
    """Commands sent per decision and which (MONITOR; what scripts run inside Redis is not
    a round trip), and the server's own time per decision (``INFO commandstats``)."""
    await fn("warm")
    await client.config_resetstat()
    for i in range(decisions):
        await fn(f"k{i % 7}")
    stats = await client.info("commandstats")
    server_usec = sum(
        value["usec"]
        for name, value in stats.items()
        if name.upper().removeprefix("CMDSTAT_") in {"EVALSHA", "PING", "GET", "TTL", "EVAL"}
    )
    counter = await asyncio.to_thread(CommandCounter, port)
    for i in range(decisions):
        await fn(f"k{i % 7}")
    counts = await asyncio.to_thread(counter.finish)
    detail = ", ".join(f"{name} {n / decisions:g}" for name, n in sorted(counts.items()))
    return sum(counts.values()) / decisions, server_usec / decisions, detail


async def redis_section(port: int, calls: int) -> None:
    url = f"redis://127.0.0.1:{port}/0"
    config = RedisConfig(url=url)
    client = Redis.from_url(url, max_connections=64)
    store = RedisLimitStore(await open_redis(config), config, prefix="bench:")
    rules = tuple(rule(a) for a in ALGORITHMS)
    ours = RateLimiter(LimitsConfig(store="redis", rules=rules), store=store)

    storage = limits.aio.storage.RedisStorage(f"async+{url}", implementation="redispy")
    item = limits.RateLimitItemPerMinute(BIG)
    moving = limits.aio.strategies.MovingWindowRateLimiter(storage)
    counter = limits.aio.strategies.SlidingWindowCounterRateLimiter(storage)
    fixed = limits.aio.strategies.FixedWindowRateLimiter(storage)

    async def hit_and_stats(strategy, key):  # type: ignore[no-untyped-def]
        await strategy.hit(item, key)
        return await strategy.get_window_stats(item, key)

    pyrate_bucket = await pyrate.RedisBucket.init(
        [pyrate.Rate(BIG, pyrate.Duration.MINUTE)], client, "bench-pyrate"
    )
    pyrate_limiter = pyrate.Limiter(pyrate_bucket)
    # The floors use the client our store uses (open_redis: its socket timeouts and pool), so
    # that the ratio measures the decision, not a differently configured connection.
    ours_client = store.client
    one = ours_client.register_script("return 1")

    variants: dict[str, Callable[[str], Awaitable[object]]] = {
        "ours token_bucket": lambda k: ours.check_rate_limit("token_bucket", k),
        "ours sliding_window": lambda k: ours.check_rate_limit("sliding_window", k),
        "ours fixed_window": lambda k: ours.check_rate_limit("fixed_window", k),
        "limits MovingWindow hit": lambda k: moving.hit(item, k),
        "limits MovingWindow hit+get_window_stats": lambda k: hit_and_stats(moving, k),
        "limits SlidingWindowCounter hit": lambda k: counter.hit(item, k),
        "limits SlidingWindowCounter hit+stats": lambda k: hit_and_stats(counter, k),
        "limits FixedWindow hit": lambda k: fixed.hit(item, k),
        "limits FixedWindow hit+get_window_stats": lambda k: hit_and_stats(fixed, k),
        "pyrate-limiter RedisBucket (one bucket)": lambda k: pyrate_limiter.try_acquire_async(
            k, blocking=False
        ),
        "floor: PING": lambda k: ours_client.ping(),
        "floor: EVALSHA return 1": lambda k: one(keys=[k]),
    }
    # Rounds over every variant, best of each: on a shared machine the load moves, and
    # interleaving gives every variant the same chances.
    sequential = dict.fromkeys(variants, 0.0)
    concurrent = dict.fromkeys(variants, 0.0)
    for _ in range(RUNS):
        for name, fn in variants.items():
            await client.flushdb()  # each library's keys from scratch, and no clash of types
            await fn("warm")
            sequential[name] = max(sequential[name], await per_second_async(fn, calls, True, 1))
            concurrent[name] = max(concurrent[name], await concurrent_per_second(fn, calls))
    results: dict[str, tuple[float, float, float, float, str]] = {}
    for name, fn in variants.items():
        await client.flushdb()
        counted = await commands_per_decision(port, client, fn)
        results[name] = (sequential[name], concurrent[name], *counted)

    print(f"Redis 7 on 127.0.0.1 (private server): decisions per second, best of {RUNS} x {calls}")
    tasks = f"{CONCURRENCY} tasks"
    print(
        f"  {'implementation':44} {'sequential':>11} {tasks:>11} {'cmds/decision':>14}"
        f" {'server us':>10}"
    )
    for name, (seq, conc, per, server, detail) in results.items():
        print(f"  {name:44} {seq:11,.0f} {conc:11,.0f} {per:14.2f} {server:10.1f}   {detail}")
    print("  ratios ours / theirs, sequential | 32 tasks:")
    for mine in ("ours token_bucket", "ours sliding_window", "ours fixed_window"):
        for other in (
            "floor: EVALSHA return 1",
            "floor: PING",
            "limits MovingWindow hit+get_window_stats",
            "limits SlidingWindowCounter hit+stats",
            "limits FixedWindow hit+get_window_stats",
            "limits MovingWindow hit",
        ):
            s, c = (results[mine][i] / results[other][i] for i in (0, 1))
            print(f"    {mine:22} / {other:42} = {s:5.2f}x | {c:5.2f}x")
    await ours.close()
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory-calls", type=int, default=40_000)
    parser.add_argument("--redis-calls", type=int, default=2_000)
    args = parser.parse_args()
    print(f"limits {limits.__version__}, pyrate-limiter {pyrate.__version__}\n")
    asyncio.run(memory(args.memory_calls))
    print()
    with RedisServer(free_port(7100, 7139)) as server:
        asyncio.run(redis_section(server.port, args.redis_calls))


if __name__ == "__main__":
    main()
