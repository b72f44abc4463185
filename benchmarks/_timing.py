"""Timing helpers the benchmark scripts share: whole processes, awaited calls, percentiles."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable


def time_process(
    argv: list[str], env: dict[str, str], runs: int, *, check: bool = True
) -> list[float]:
    """Wall-clock ms of ``runs`` runs of ``argv`` (interpreter start-up included)."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=check
        )
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def time_async(
    fn: Callable[[], Awaitable[object]], runs: int, *, warm_up: bool = True
) -> list[float]:
    """Ms per call of ``runs`` awaited calls of ``fn``, after one untimed call."""
    if warm_up:
        await fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[-1]
