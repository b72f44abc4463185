"""One process of the reservations' exactness test, through `load_services` (the runtime's
own wiring). Prints ``ready`` once the store is open, waits for a line on stdin so that
every process starts at once, then prints what it got as JSON:

* ``budget``: ``TASKS`` concurrent reservations of ``AMOUNT`` nano-units each on
  ``ACCOUNT``'s budget of ``LIMIT``; ``admitted`` is how many were allowed.
* ``slots``: ``TASKS`` concurrent tasks, each trying ``ATTEMPTS`` times for one of
  ``ACCOUNT``'s ``CAP`` slots and holding it ``HOLD`` seconds; ``held`` lists the
  (start, end) of each slot held, on the machine's monotonic clock (shared by processes),
  measured inside the time the slot was taken.

* ``hold``: takes ``CAP`` of ``ACCOUNT``'s slots, prints ``{"held": N}`` and keeps them
  (renewed in the background) until it is killed.

``failed`` counts the reservations ``failure_mode`` answered (``stored`` False).

    python -m tests.support.reservations_worker CONFIG budget ACCOUNT TASKS AMOUNT LIMIT
    python -m tests.support.reservations_worker CONFIG slots ACCOUNT TASKS CAP ATTEMPTS HOLD
    python -m tests.support.reservations_worker CONFIG hold ACCOUNT CAP
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from revoctl.core import load_services
from revoctl.core.limits import RateLimiter
from revoctl.core.limits.reservations import (
    BudgetCharge,
    Reservation,
    Settlement,
    SlotCharge,
    SlotRelease,
)

KEEP = 86_400.0


async def budget(limiter: RateLimiter, account: str, tasks: int, amount: int, limit: int) -> Any:
    charge = Reservation(account, budget=BudgetCharge(account, 0, limit, amount, KEEP))
    answers = await asyncio.gather(*(limiter.reserve([charge]) for _ in range(tasks)))
    return {
        "admitted": sum(answer.allowed for [answer] in answers),
        "failed": sum(not answer.stored for [answer] in answers),
    }


async def slots(
    limiter: RateLimiter, account: str, tasks: int, cap: int, attempts: int, hold: float
) -> Any:
    held: list[tuple[float, float]] = []
    failed = 0

    async def task() -> None:
        nonlocal failed
        for _ in range(attempts):
            lease = limiter.new_lease()
            [answer] = await limiter.reserve(
                [Reservation(account, slot=SlotCharge(account, cap, lease))]
            )
            failed += not answer.stored
            if answer.allowed and answer.stored:
                start = time.monotonic()
                await asyncio.sleep(hold)
                held.append((start, time.monotonic()))
                await limiter.settle([Settlement(account, slot=SlotRelease(account, lease))])
            else:
                await asyncio.sleep(hold / 4)

    await asyncio.gather(*(task() for _ in range(tasks)))
    return {"held": held, "failed": failed}


async def hold(limiter: RateLimiter, account: str, cap: int) -> None:
    held = 0
    for _ in range(cap):
        slot = SlotCharge(account, cap, limiter.new_lease())
        [answer] = await limiter.reserve([Reservation(account, slot=slot)])
        held += answer.allowed and answer.stored
    print(json.dumps({"held": held}), flush=True)
    await asyncio.Event().wait()  # until killed: the limiter renews the leases meanwhile


async def main(config: str, mode: str, account: str, numbers: list[str]) -> Any:
    async with load_services(config) as svc:
        limiter = svc.limiter
        await limiter.spent(account, 0)  # opens the store before the start line
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        if mode == "hold":
            return await hold(limiter, account, int(numbers[0]))
        if mode == "budget":
            tasks, amount, limit = (int(n) for n in numbers)
            return await budget(limiter, account, tasks, amount, limit)
        tasks, cap, attempts = (int(n) for n in numbers[:3])
        return await slots(limiter, account, tasks, cap, attempts, float(numbers[3]))


if __name__ == "__main__":
    config, mode, account, *numbers = sys.argv[1:]
    print(json.dumps(asyncio.run(main(config, mode, account, numbers))), flush=True)
