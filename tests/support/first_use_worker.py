"""One process of the first-use test: opens the services on the configuration it is given
(the embedded SQLite database of a fresh ``REVOCTL_HOME``) without touching the database,
prints ``ready``, waits for a line on stdin so that every process starts at once, then uses
the database for the first time (brings its schema up to date and reads from it).

    python -m tests.support.first_use_worker
"""

from __future__ import annotations

import asyncio
import sys

from revoctl.core import load_services


async def first_use() -> None:
    async with load_services() as svc:
        from sqlalchemy import text

        await svc.db.initialize()  # the engine is built, nothing is connected yet
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        await svc.db.ensure_schema()
        async with svc.db.get_async_session() as session:
            await session.execute(text("SELECT count(*) FROM request_logs"))
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(first_use())
