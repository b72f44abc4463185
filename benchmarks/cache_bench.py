"""What the response cache adds to a request: ``revoctl serve`` (protections on, Redis) with
``[gateway.cache]`` on and off, in front of the same stand-in provider.

Three cases, each a run of sequential requests (one connection, one request at a time, so
the figures are latencies, not queueing), taken in turn ``--rounds`` times so they meet
the same moments of a shared machine:

* ``cache off``: deterministic requests (temperature 0), each with a prompt of its own, to
  a gateway whose cache is off;
* ``miss``: the same, to a gateway whose cache is on: each is looked up, charged,
  answered by the stand-in and stored (``x-revoctl-cache: miss``);
* ``hit``: one request repeated to that gateway: answered from Redis (``hit``), nothing
  charged, no provider called.

Per case: p50 and p99 from send to last byte, the gateway's own time
(``x-revoctl-overhead-ms``) at p50, and the ratios to ``cache off``; then hit against miss.

    python benchmarks/cache_bench.py [--requests 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _gateway.client import BODY, HttpConnection, Run, Target
from _gateway.redis_server import bench_redis
from _gateway.revoctl_server import revoctl_gateway
from _gateway.servers import standin

CACHE_ON = "REVOCTL_GATEWAY__CACHE__ENABLED"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests a case a round")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each case")
    return parser.parse_args()


@contextlib.contextmanager
def cache_enabled(enabled: bool):  # type: ignore[no-untyped-def]
    """``os.environ`` turning the cache on or off while a gateway starts."""
    saved = os.environ.get(CACHE_ON)
    os.environ[CACHE_ON] = "true" if enabled else "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(CACHE_ON, None)
        else:
            os.environ[CACHE_ON] = saved


def body(prompt: str) -> dict[str, object]:
    return {**BODY, "temperature": 0, "messages": [{"role": "user", "content": prompt}]}


async def sequential(target: Target, bodies: list[dict[str, object]], expect: str | None) -> Run:
    """``bodies`` sent one at a time on one connection; every answer must be 200 and, with
    ``expect``, carry ``x-revoctl-cache: expect``."""
    run = Run()
    connection = await HttpConnection.open(target.port)
    try:
        for one in bodies:
            request = target.request(one)
            started = time.perf_counter()
            status, headers, _ = await connection.exchange(request)
            run.latencies.append((time.perf_counter() - started) * 1000)
            run.overheads.append(float(headers.get("x-revoctl-overhead-ms", "nan")))
            seen = headers.get("x-revoctl-cache")
            if status != 200 or seen != expect:
                error = f"{status} {seen}"
                run.errors[error] = run.errors.get(error, 0) + 1
    finally:
        connection.close()
    return run


async def rounds(off: Target, on: Target, args: argparse.Namespace) -> dict[str, Run]:
    runs = {"cache off": Run(), "miss": Run(), "hit": Run()}
    warm = [body(f"warm {n}") for n in range(40)]
    await sequential(off, warm, None)
    await sequential(on, warm, "miss")
    repeated = body("the same question every time")
    await sequential(on, [repeated], "miss")
    for _ in range(args.rounds):
        tag = uuid.uuid4().hex[:8]
        fresh = [body(f"question {tag} {n}") for n in range(args.requests)]
        cases = {
            "cache off": (off, fresh, None),
            "miss": (on, fresh, "miss"),
            "hit": (on, [repeated] * args.requests, "hit"),
        }
        for name, (target, bodies, expect) in cases.items():
            await asyncio.sleep(0.3)
            run = await sequential(target, bodies, expect)
            total = runs[name]
            total.latencies += run.latencies
            total.overheads += run.overheads
            for error, count in run.errors.items():
                total.errors[error] = total.errors.get(error, 0) + count
    return runs


def main() -> None:
    args = arguments()
    prefix = f"revoctl-cachebench:{uuid.uuid4().hex[:8]}:"
    load = os.getloadavg()
    print(
        f"cache benchmark: {os.cpu_count()} CPUs, load {load[0]:.2f}; revoctl serve, protections"
        f" on (Redis); {args.rounds} x {args.requests} sequential requests a case",
        flush=True,
    )
    with standin(0.0) as (url, _), bench_redis() as (redis_url, _), contextlib.ExitStack() as stack:
        gateways = []
        for n, enabled in enumerate((False, True)):
            with cache_enabled(enabled):
                gateway = stack.enter_context(
                    revoctl_gateway(
                        url, redis_url, protections=True, prefix=f"{prefix}{n}:", workers=1,
                        python=sys.executable,
                    )
                )  # fmt: skip
            gateways.append(gateway.target)
        runs = asyncio.run(rounds(gateways[0], gateways[1], args))
    base = runs["cache off"]
    print(f"\n{'case':<12}{'p50 ms':>9}{'p99 ms':>9}{'own p50 ms':>12}{'p50 x':>8}{'p99 x':>8}")
    for name, run in runs.items():
        p50, p99 = run.cut(50), run.cut(99)
        print(
            f"{name:<12}{p50:>9.2f}{p99:>9.2f}{run.cut(50, run.overheads):>12.2f}"
            f"{p50 / base.cut(50):>8.2f}{p99 / base.cut(99):>8.2f}"
            + (f"  errors {run.errors}" if run.errors else "")
        )
    hit, miss = runs["hit"], runs["miss"]
    print(
        f"\nhit / miss: p50 {hit.cut(50) / miss.cut(50):.2f}, p99 {hit.cut(99) / miss.cut(99):.2f};"
        f" miss - cache off (the lookup and the store): p50 {miss.cut(50) - base.cut(50):+.2f} ms,"
        f" p99 {miss.cut(99) - base.cut(99):+.2f} ms"
    )


if __name__ == "__main__":
    main()
