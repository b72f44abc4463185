"""A case: one server measured in three phases (steady, streamed, capacity).

`latencies` runs the open-loop phases of one case; `capacities` the closed-loop runs of
several cases in turn (A, B, A, B, ...), so that two cases compared as a ratio (protections
on and off) meet the same moments of a shared machine, and keeps each case's best run.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

from .client import BODY, STREAM_BODY, Run, Target, closed_loop, steady, warm_up


@dataclass
class Case:
    target: Target
    steady: Run
    stream: Run | None
    capacity: Run
    others: int  # answered besides these runs: the warm-up, the capacity runs not kept

    @property
    def answered(self) -> int:
        """Every request answered, warm-up included."""
        runs = (self.steady, self.stream, self.capacity)
        return self.others + sum(run.served for run in runs if run is not None)


async def latencies(target: Target, standin_pid: int, args: argparse.Namespace) -> Case:
    """The warm-up, then the steady and the streamed phases (capacity: `capacities`)."""
    warmed = await warm_up(target)
    await asyncio.sleep(0.5)
    steady_run = await steady(target, standin_pid, BODY, args.rate, args.requests)
    stream_run = None
    if args.stream_requests and target.streams:
        await asyncio.sleep(0.5)
        stream_run = await steady(target, standin_pid, STREAM_BODY, args.rate, args.stream_requests)
    return Case(target, steady_run, stream_run, Run(), warmed)


async def capacities(cases: list[Case], standin_pid: int, args: argparse.Namespace) -> None:
    """``--capacity-runs`` closed-loop runs of each case, the cases in turn; each keeps its
    best run (a stall of the shared machine or a passing collapse of a pool should not
    decide it), the others count as answered."""
    runs: list[list[Run]] = [[] for _ in cases]
    for _ in range(args.capacity_runs):
        for case, kept in zip(cases, runs, strict=True):
            await asyncio.sleep(0.3)
            kept.append(
                await closed_loop(case.target, standin_pid, BODY, args.seconds, args.concurrency)
            )
    for case, kept in zip(cases, runs, strict=True):
        case.capacity = max(kept, key=lambda run: run.rate)
        case.others += sum(run.served for run in kept) - case.capacity.served


async def measure(target: Target, standin_pid: int, args: argparse.Namespace) -> Case:
    """Every phase of one case."""
    case = await latencies(target, standin_pid, args)
    await asyncio.sleep(0.5)
    await capacities([case], standin_pid, args)
    return case
