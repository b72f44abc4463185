"""`every`: the one background loop (reports, key refresh, breaker sync, batch flush)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from revoctl.core._periodic import every
from revoctl.core.errors import first_line


async def test_runs_now_then_on_each_wake() -> None:
    runs: list[int] = []
    wake = asyncio.Event()

    async def work() -> None:
        runs.append(len(runs))

    task = asyncio.create_task(every(3600, work, what="work", wake=wake))
    await asyncio.sleep(0)
    assert runs == [0]
    for expected in (2, 3):
        wake.set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(runs) == expected
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_waits_first_when_not_now() -> None:
    runs: list[None] = []

    async def work() -> None:
        runs.append(None)

    task = asyncio.create_task(every(3600, work, what="work", now=False))
    await asyncio.sleep(0.01)
    assert runs == []
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_run_of_failures_is_logged_once_and_the_recovery_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes = iter([ValueError("down\nsecond line"), ValueError("down"), None, None])
    done = asyncio.Event()

    async def work() -> None:
        outcome = next(outcomes, None)
        if outcome is None and not done.is_set():
            done.set()
        if outcome is not None:
            raise outcome

    with caplog.at_level(logging.WARNING, logger="revoctl"):
        task = asyncio.create_task(every(0, work, what="report"))
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["report failed: ValueError: down", "report works again"]


def test_first_line_of_an_exception() -> None:
    assert first_line(ValueError("  one\ntwo ")) == "one"
    assert first_line(TimeoutError()) == "TimeoutError"
