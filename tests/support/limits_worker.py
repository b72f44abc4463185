"""One process of the exactness test: ``TASKS`` concurrent tasks, ``CHECKS`` checks each, on one
key, through `load_services` (the runtime's own wiring). Prints ``ready`` once the store is
open, waits for a line on stdin so that every process starts at once, then prints its counts:
``failed`` are the answers ``failure_mode`` gave in the store's place (down or busy).

    python -m tests.support.limits_worker CONFIG RULE KEY TASKS CHECKS
"""

from __future__ import annotations

import asyncio
import json
import sys

from revoctl.core import load_services

FAILURE_ANSWERS = ("store unavailable", "store busy")
"""How the reason of an answer ``failure_mode`` gave in the store's place begins."""


async def hammer(config: str, rule: str, key: str, tasks: int, checks: int) -> dict[str, int]:
    async with load_services(config) as svc:
        await svc.limiter.peek(rule, "warm-up")  # opens the store before the start line
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)

        async def task() -> list[bool | None]:
            outcomes: list[bool | None] = []
            for _ in range(checks):
                result = await svc.limiter.check_rate_limit(rule, key)
                failed = (result.reason or "").startswith(FAILURE_ANSWERS)
                outcomes.append(None if failed else result.allowed)
            return outcomes

        done = [o for batch in await asyncio.gather(*(task() for _ in range(tasks))) for o in batch]
    return {
        "allowed": done.count(True),
        "denied": done.count(False),
        "failed": done.count(None),
    }


if __name__ == "__main__":
    config, rule, key, tasks, checks = sys.argv[1:6]
    counts = asyncio.run(hammer(config, rule, key, int(tasks), int(checks)))
    print(json.dumps(counts), flush=True)
