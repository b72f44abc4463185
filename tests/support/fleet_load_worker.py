"""A process that publishes one report of deployments' loads to the fleet's store, then exits
(for `tests.integration.test_fleet_load_stores`).

``python -m tests.support.fleet_load_worker redis|sql URL KEY PROCESS LOADS_JSON``: KEY is the
Redis hash (ignored for sql); prints the number of other processes' reports it read.
"""

from __future__ import annotations

import asyncio
import json
import sys

from revoctl.runtime.fleet_load import FleetLoadStore


async def publish(kind: str, url: str, key: str, process: str, loads: str) -> int:
    store: FleetLoadStore
    if kind == "redis":
        from redis.asyncio import Redis

        from revoctl.runtime.fleet_load_stores import RedisFleetLoadStore

        store = RedisFleetLoadStore(Redis.from_url(url), key)
        others = await store.exchange(process, json.loads(loads), 30.0)
        await store.close()
        return len(others)
    from revoctl.core.db import DatabaseConfig, DatabaseManager
    from revoctl.runtime.fleet_load_stores import SqlFleetLoadStore

    async with DatabaseManager(DatabaseConfig(url=url), role="test") as db:
        store = SqlFleetLoadStore(db)
        return len(await store.exchange(process, json.loads(loads), 30.0))


if __name__ == "__main__":
    print(asyncio.run(publish(*sys.argv[1:6])))
