"""Timing helpers the benchmark scripts share: whole processes, awaited calls, percentiles."""

from __future__ import annotations

import compileall
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import revoctl


def write_bytecode() -> None:
    """Byte-compile revoctl before its processes are timed, as installing a wheel does.

    An editable install leaves that to the first run, which skips it where
    PYTHONDONTWRITEBYTECODE is set (as on this project's CI machine): every timed run would
    then compile revoctl from source (about 40 ms), which no installed copy does, while the
    anchors' packages were compiled when pip installed them.
    """
    compileall.compile_dir(Path(revoctl.__file__).parent, quiet=1)


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
