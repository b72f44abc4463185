"""Circuit breakers: the per-call cost of protection, and how fast operators' trips and
resets reach a fleet of processes, in one run.

* per call: a protected ``async`` no-op in the closed state, best of 5 runs, against the
  same no-op unprotected, and against ``aiobreaker``, ``purgatory`` and ``circuitbreaker``
  (async) and ``pybreaker`` (sync: its ``call_async`` needs tornado; timed against a sync
  no-op); revoctl with ``timeout = 0`` and with a timeout (next to ``asyncio.timeout``
  and ``asyncio.wait_for`` alone), alone and with the Redis store configured (its
  control plane running); purgatory and pybreaker with their Redis storage too;
* propagation: N worker processes (``tests/support/breaker_worker.py``) call a breaker
  in a loop with the default ``poll_interval``; this process trips it, waits until
  every worker is refused, resets it, waits until every worker is let through again;
  on SQLite, PostgreSQL and Redis. Delays run from the store's clock at the write to
  each worker's first refused (or let through) call.

Prints per-call figures with the overhead over the unprotected call and the ratios
(library overhead / revoctl overhead), then the propagation times.

    python benchmarks/breakers_bench.py [--processes 8] [--rounds 3] [--seconds 0.1]

Servers: ``REVOCTL_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/13``, keys under a
unique prefix, deleted afterwards) and ``REVOCTL_BENCH_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``; a scratch database is created and
dropped). An unreachable server's rows are skipped with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support.breaker_worker

import aiobreaker
import circuitbreaker
import purgatory
import pybreaker
import redis

from revoctl.core import BreakersConfig, CircuitBreaker, CircuitBreakerConfig
from revoctl.core._stores import StoreContext
from revoctl.core.breakers import CircuitBreakerManager, open_breaker_store
from revoctl.core.db import DatabaseConfig, DatabaseManager, upgrade
from revoctl.core.redis import RedisConfig

REPO = Path(__file__).resolve().parent.parent

REDIS_URL = os.environ.get("REVOCTL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
POSTGRES_URL = os.environ.get(
    "REVOCTL_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BREAKER = "openai_api"
WORKER = [sys.executable, "-m", "tests.support.breaker_worker", BREAKER]


async def noop() -> None:
    return None


def sync_noop() -> None:
    return None


async def async_ns(fn: Callable[[], Awaitable[object]], seconds: float) -> float:
    """ns per awaited call: calls sized to take ``seconds`` a run, best of 5 runs."""
    calls = 100
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            await fn()
        if time.perf_counter() - start >= seconds / 4:
            break
        calls *= 4
    best = float("inf")
    for _ in range(5):
        start_ns = time.perf_counter_ns()
        for _ in range(calls):
            await fn()
        best = min(best, (time.perf_counter_ns() - start_ns) / calls)
    return best


def sync_ns(fn: Callable[[], object], seconds: float) -> float:
    calls = 100
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - start >= seconds / 4:
            break
        calls *= 4
    best = float("inf")
    for _ in range(5):
        start_ns = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter_ns() - start_ns) / calls)
    return best


def redis_reachable() -> str | None:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@contextmanager
def redis_prefix() -> Iterator[str]:
    prefix = f"revoctl-bench-{uuid.uuid4().hex[:8]}:"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        # the anchors put their own namespace (e.g. purgatory's "cbr::") before it
        keys = list(client.scan_iter(match=f"*{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


# ---------------------------------------------------------------- per call


async def per_call(seconds: float) -> None:
    rows: list[tuple[str, float, float, str]] = []  # label, ns, baseline ns, compared with
    base = await async_ns(noop, seconds)
    sync_base = sync_ns(sync_noop, seconds)
    plain, timed = "revoctl, timeout = 0", "revoctl, timeout = 30 s"

    def add(label: str, ns: float, against: str = plain, baseline: float = base) -> None:
        rows.append((label, ns, baseline, against))

    untimed = CircuitBreaker(CircuitBreakerConfig(name="bench", timeout=0))
    add(plain, await async_ns(lambda: untimed.call(noop), seconds), "")
    with_deadline = CircuitBreaker(CircuitBreakerConfig(name="bench", timeout=30))
    add(timed, await async_ns(lambda: with_deadline.call(noop), seconds), "")

    unreachable = redis_reachable()
    if unreachable is None:
        with redis_prefix() as prefix:
            for timeout, against in ((0.0, plain), (30.0, timed)):
                ns = await _with_redis_store(prefix, timeout, seconds)
                add(f"{against}, Redis store configured", ns, against)
    else:
        print(f"(Redis rows skipped: {unreachable})")

    async def with_timeout() -> None:
        async with asyncio.timeout(30):
            await noop()

    add("asyncio.timeout(30) alone", await async_ns(with_timeout, seconds), timed)
    wait_for = await async_ns(lambda: asyncio.wait_for(noop(), 30), seconds)
    add("asyncio.wait_for(noop(), 30) alone", wait_for, timed)

    aio = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=30))
    add("aiobreaker", await async_ns(lambda: aio.call_async(noop), seconds))

    decorated = circuitbreaker.circuit(failure_threshold=5, recovery_timeout=30)(noop)
    add("circuitbreaker", await async_ns(decorated, seconds))

    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    add("purgatory (memory)", await async_ns(factory(BREAKER)(noop), seconds))
    if unreachable is None:
        with redis_prefix() as prefix:
            uow = purgatory.AsyncRedisUnitOfWork(REDIS_URL)
            shared = purgatory.AsyncCircuitBreakerFactory(5, 30, uow=uow)
            await shared.initialize()
            protected = shared(prefix + BREAKER)(noop)
            add("purgatory (Redis)", await async_ns(protected, seconds / 4))

    memory = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
    ns = sync_ns(lambda: memory.call(sync_noop), seconds)
    add("pybreaker (sync call, memory)", ns, plain, sync_base)
    if unreachable is None:
        with redis_prefix() as prefix:
            client = redis.Redis.from_url(REDIS_URL)
            storage = pybreaker.CircuitRedisStorage(
                pybreaker.STATE_CLOSED, client, namespace=prefix + BREAKER
            )
            shared_sync = pybreaker.CircuitBreaker(5, 30, state_storage=storage)
            ns = sync_ns(lambda: shared_sync.call(sync_noop), seconds / 4)
            add("pybreaker (sync call, Redis)", ns, plain, sync_base)
            client.close()

    overheads = {label: ns - baseline for label, ns, baseline, _ in rows}
    print(
        "per call, closed state, best of 5 "
        f"(unprotected no-op: async {base:.0f} ns, sync {sync_base:.0f} ns)"
    )
    print(f"  {'':44} {'ns/call':>9} {'overhead':>9}   overhead / revoctl's")
    for label, ns, _, against in rows:
        ratio = f"{overheads[label] / overheads[against]:7.1f}x  ({against})" if against else ""
        print(f"  {label:44} {ns:9.0f} {overheads[label]:9.0f}   {ratio}")


async def _with_redis_store(prefix: str, timeout: float, seconds: float) -> float:
    """ns per call of a breaker from a manager on the Redis store, its control plane running."""
    config = BreakersConfig.model_validate(
        {"store": "redis", "key_prefix": prefix, "services": {BREAKER: {"timeout": timeout}}}
    )
    redis_config = RedisConfig(url=REDIS_URL)

    async def open_store() -> Any:
        return await open_breaker_store(config, StoreContext(redis_config, db=_no_db))

    async with CircuitBreakerManager(config, open_store=open_store) as manager:
        breaker = manager.get(BREAKER)
        while manager.control.status != "ok":
            await asyncio.sleep(0.01)
        return await async_ns(lambda: breaker.call(noop), seconds)


def _no_db() -> DatabaseManager:
    raise RuntimeError("the Redis store needs no database")


# ---------------------------------------------------------------- propagation


class Workers:
    """``count`` worker processes on the store ``environ`` points at."""

    def __init__(self, directory: Path, environ: dict[str, str], count: int) -> None:
        self.mode = directory / "mode"
        self.mode.write_text("ok")
        self.stop = directory / "stop"
        self.logs = [directory / f"w{i}.log" for i in range(count)]
        env = {**os.environ, **environ, "PYTHONPATH": str(REPO)}
        self.procs = [
            subprocess.Popen(
                [*WORKER, str(log), str(self.mode), str(self.stop)],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for log in self.logs
        ]

    def first(self, index: int, event: str, since: float) -> float | None:
        if not self.logs[index].exists():
            return None
        for line in self.logs[index].read_text().splitlines():
            name, at, *_ = line.split(" ")
            if name == event and float(at) >= since:
                return float(at)
        return None

    async def reached(self, event: str, since: float, timeout: float = 60) -> list[float]:
        deadline = time.monotonic() + timeout
        while True:
            found = [self.first(i, event, since) for i in range(len(self.logs))]
            if all(at is not None for at in found):
                return [at for at in found if at is not None]
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"workers did not all log {event!r}")
            await asyncio.sleep(0.01)

    def close(self) -> None:
        self.stop.touch()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _store_time(item: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(item["changed_at"])).timestamp()


async def propagation(label: str, environ: dict[str, str], count: int, rounds: int) -> None:
    from revoctl.config import load_config
    from revoctl.core.services import open_services

    with tempfile.TemporaryDirectory() as scratch:
        environ = {**environ, "REVOCTL_HOME": scratch}
        workers = Workers(Path(scratch), environ, count)
        started = time.monotonic()
        try:
            await workers.reached("ready", 0, timeout=180)
            await workers.reached("allowed", 0)
            start_up = time.monotonic() - started
            loaded = load_config(env={**os.environ, **environ})
            trips: list[float] = []
            resets: list[float] = []
            async with open_services(loaded, role="cli") as svc:
                for _ in range(rounds):
                    item = await svc.breakers.trip(BREAKER, reason="benchmark")
                    at = _store_time(item)
                    trips += [t - at for t in await workers.reached("rejected", at)]
                    [item] = await svc.breakers.reset(BREAKER)
                    at = _store_time(item)
                    resets += [t - at for t in await workers.reached("allowed", at)]
                    await asyncio.sleep(0.37)  # a different phase against the polls
        finally:
            workers.close()
    poll = loaded.settings.breakers.poll_interval
    print(
        f"  {label:26} trip median {statistics.median(trips) * 1000:4.0f} ms, "
        f"max {max(trips) * 1000:4.0f} ms; reset median {statistics.median(resets) * 1000:4.0f}"
        f" ms, max {max(resets) * 1000:4.0f} ms  (poll_interval {poll:g} s; {count} processes"
        f" up in {start_up:.1f} s)"
    )


async def migrated(url: str) -> None:
    async with DatabaseManager(DatabaseConfig(url=url), role="bench") as db:
        await upgrade(db)


async def propagations(count: int, rounds: int) -> None:
    import asyncpg

    print(f"\npropagation of trip and reset to {count} processes, {rounds} rounds each")
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite+aiosqlite:///{scratch}/fleet.db"
        await migrated(url)
        env = {"REVOCTL_BREAKERS__STORE": "sql", "REVOCTL_DATABASE__URL": url}
        await propagation("SQLite", env, count, rounds)

    name = f"revoctl_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"  PostgreSQL skipped: {type(exc).__name__}: {exc}")
    else:
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            base = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
            url = f"{base}/{name}"
            await migrated(url)
            env = {"REVOCTL_BREAKERS__STORE": "sql", "REVOCTL_DATABASE__URL": url}
            await propagation("PostgreSQL", env, count, rounds)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()

    unreachable = redis_reachable()
    if unreachable is not None:
        print(f"  Redis skipped: {unreachable}")
        return
    with redis_prefix() as prefix:
        env = {
            "REVOCTL_BREAKERS__STORE": "redis",
            "REVOCTL_REDIS__URL": REDIS_URL,
            "REVOCTL_BREAKERS__KEY_PREFIX": prefix,
        }
        await propagation("Redis (pub/sub + polling)", env, count, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.1, help="length of one timed run")
    args = parser.parse_args()
    asyncio.run(per_call(args.seconds))
    asyncio.run(propagations(args.processes, args.rounds))


if __name__ == "__main__":
    main()
