"""The LLM stand-in's capacity, and a provider adapter's cost next to bare httpx and the official
openai client, in the same run. The stand-in runs in its own process (its own GIL), as the
gateway benchmark should run it.

* capacity: ``--concurrency`` callers in one event loop POST non-streaming chat completions
  as fast as they are answered, for ``--seconds``: requests/s, p50/p99, and the stand-in's
  own CPU time per request (from /proc), which bounds what it can serve per core whatever
  the load generator manages;
* steady: ``--rate`` requests/s, paced, for ``--seconds``: p50/p99 (the gateway goals are
  set at 200 requests/s);
* per call, one at a time: `OpenAIProvider.complete` against ``httpx.AsyncClient.post`` on
  its own and, when installed, ``openai.AsyncOpenAI``: p50 and the ratios.

    python benchmarks/providers_bench.py [--seconds 5] [--concurrency 8] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.support

import httpx

from revoctl.core.gateway.settings import ProviderConfig
from revoctl.runtime.providers import OpenAIProvider

KEY = "sk-bench-" + "x" * 24
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "say something"}]}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return statistics.median(samples), cuts[98]


async def capacity(url: str, pid: int, seconds: float, concurrency: int) -> None:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, limits=limits, headers=headers) as client:
        await client.post("/v1/chat/completions", json=BODY)
        deadline = time.perf_counter() + seconds

        async def caller() -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await client.post("/v1/chat/completions", json=BODY)
                latencies.append((time.perf_counter() - start) * 1000)
                response.raise_for_status()

        cpu_before, start = cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - start, cpu_seconds(pid) - cpu_before
    p50, p99 = percentiles(latencies)
    per_request_us = cpu / len(latencies) * 1e6
    print(f"capacity: {concurrency} callers in one loop, {elapsed:.1f} s")
    print(f"  {len(latencies) / elapsed:8.0f} requests/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
    print(
        f"  stand-in CPU {per_request_us:6.0f} us/request"
        f" -> at most ~{1e6 / per_request_us:,.0f} requests/s per core"
    )


async def steady(url: str, seconds: float, rate: float) -> None:
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        await client.post("/v1/chat/completions", json=BODY)

        async def one() -> None:
            start = time.perf_counter()
            response = await client.post("/v1/chat/completions", json=BODY)
            latencies.append((time.perf_counter() - start) * 1000)
            response.raise_for_status()

        tasks, start = [], time.perf_counter()
        for n in range(int(seconds * rate)):
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    p50, p99 = percentiles(latencies)
    print(f"steady: {rate:.0f} requests/s asked, {len(latencies) / elapsed:.0f} served")
    print(f"  p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")


async def one_at_a_time(fn: Callable[[], Awaitable[object]], calls: int) -> float:
    """p50 ms of ``calls`` awaited calls, after 20 untimed ones."""
    for _ in range(20):
        await fn()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


async def per_call(url: str, calls: int) -> None:
    config = ProviderConfig(base_url=url + "/v1")

    async def key() -> str:
        return KEY

    provider = OpenAIProvider("bench", config, key)
    results: dict[str, float] = {}
    try:
        results["revoctl OpenAIProvider.complete"] = await one_at_a_time(
            lambda: provider.complete(BODY, "gpt-4o-mini"), calls
        )
    finally:
        await provider.close()
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url + "/v1", headers=headers) as client:

        async def bare() -> object:
            response = await client.post("/chat/completions", json=BODY)
            response.raise_for_status()
            return response.json()

        results["httpx.AsyncClient.post + json()"] = await one_at_a_time(bare, calls)
    if importlib.util.find_spec("openai"):
        import openai

        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0) as sdk:
            results["openai.AsyncOpenAI chat.completions.create"] = await one_at_a_time(
                lambda: sdk.chat.completions.create(**BODY),
                calls,
            )
    ours = results["revoctl OpenAIProvider.complete"]
    print(f"per call, one at a time, {calls} calls, p50")
    for label, ms in results.items():
        print(f"  {label:44} {ms:6.3f} ms   revoctl/this = {ours / ms:4.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.support.llm_standin", "--api-key", KEY],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        asyncio.run(capacity(url, server.pid, args.seconds, args.concurrency))
        asyncio.run(steady(url, args.seconds, args.rate))
        asyncio.run(per_call(url, args.calls))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
