"""One process of the reservation exactness tests: ``TASKS`` concurrent reservations on one
account of a `RedisLimitStore`. Prints ``ready`` once the store is open, waits for a line on
stdin so that every process starts at once, then prints what it saw as JSON.

``budget``: each task reserves ``AMOUNT`` nano-units of the account's budget (``LIMIT``).
``slot``: each task takes one of the account's ``CAP`` slots; while holding it, it counts
itself in a shared Redis counter (INCR, a few ms, DECR) and keeps the highest count seen,
then settles, releasing the slot, and tries again ``ROUNDS`` times.

    python -m tests.support.redis_reservations_worker URL CLUSTER PREFIX MODE TASKS
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from revoctl.core.limits import RedisLimitStore
from revoctl.core.limits.reservations import (
    BudgetCharge,
    Reservation,
    Settlement,
    SlotCharge,
    SlotRelease,
)
from revoctl.core.redis import RedisConfig, open_redis

ACCOUNT = "team-a"
AMOUNT = 7_000_000
"""Nano-units per reservation."""
FIT = 60
LIMIT = FIT * AMOUNT + AMOUNT - 1
"""Room for exactly FIT reservations, and not quite one more."""
CAP = 3
ROUNDS = 4
LEASE_SECONDS = 30.0


async def budget(store: RedisLimitStore, tasks: int) -> dict[str, int]:
    charge = BudgetCharge(ACCOUNT, 0, LIMIT, AMOUNT, keep_seconds=600)
    reservation = Reservation(ACCOUNT, budget=charge)
    done = await asyncio.gather(*(store.reserve(reservation, LEASE_SECONDS) for _ in range(tasks)))
    admitted = [r for r in done if r.allowed]
    return {"admitted": len(admitted), "amount": AMOUNT * len(admitted)}


async def slot(store: RedisLimitStore, tasks: int, prefix: str) -> dict[str, int]:
    holding = f"{prefix}holding"
    highest = held = 0

    async def task(number: int) -> None:
        nonlocal highest, held
        for round_ in range(ROUNDS):
            lease = f"{os.getpid()}-{number}-{round_}"
            charge = SlotCharge(ACCOUNT, CAP, lease)
            reserved = await store.reserve(Reservation(ACCOUNT, slot=charge), LEASE_SECONDS)
            if not reserved.allowed:
                await asyncio.sleep(0.001)
                continue
            held += 1
            highest = max(highest, int(await store.client.incr(holding)))
            await asyncio.sleep(0.003)
            await store.client.decr(holding)
            await store.settle(Settlement(ACCOUNT, slot=SlotRelease(ACCOUNT, lease)))

    await asyncio.gather(*(task(number) for number in range(tasks)))
    return {"held": held, "highest": highest}


async def main(url: str, cluster: bool, prefix: str, mode: str, tasks: int) -> dict[str, int]:
    config = RedisConfig(url=url, cluster=cluster)
    store = RedisLimitStore(await open_redis(config), config, prefix=prefix, call_timeout=30)
    try:
        await store.spent(ACCOUNT, 0)  # opens the connection before the start line
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        if mode == "budget":
            return await budget(store, tasks)
        return await slot(store, tasks, prefix)
    finally:
        await store.close()


if __name__ == "__main__":
    url, cluster, prefix, mode, tasks = sys.argv[1:6]
    counts = asyncio.run(main(url, cluster == "1", prefix, mode, int(tasks)))
    print(json.dumps(counts), flush=True)
