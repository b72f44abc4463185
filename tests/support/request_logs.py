"""What a gateway under test wrote to ``request_logs`` on PostgreSQL, read with asyncpg, and a
request tagged with an id of the test's choosing (``x-request-id``) to find its row by."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import asyncpg
import httpx

from revoctl.core._batch import RETRY_PAUSE_SECONDS

WRITE_SECONDS = 10 * (1.0 + RETRY_PAUSE_SECONDS)
"""How long buffered rows may take to reach the table once they can: ten rounds of the
usage writer's 1 s interval and its pause after a failure (a busy 2-core machine)."""


def sql(postgres_url: str, query: str) -> list[Any]:
    """``query``'s rows, on the database of ``postgres_url`` (revoctl's form of the URL)."""
    dsn = postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1)

    async def run() -> list[Any]:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            return list(await conn.fetch(query))
        finally:
            await conn.close()

    return asyncio.run(run())


def logged(postgres_url: str, request_ids: list[str]) -> Counter[str]:
    """How many ``request_logs`` rows each of ``request_ids`` has."""
    wanted = set(request_ids)
    rows = sql(postgres_url, "SELECT request_id FROM request_logs")
    return Counter(r["request_id"] for r in rows if r["request_id"] in wanted)


def wait_for_rows(postgres_url: str, request_ids: list[str], timeout: float) -> Counter[str]:
    """The rows per request id, once every one of them has one (or the deadline passed)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = logged(postgres_url, request_ids)
        if len(counts) == len(request_ids) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def ask(client: httpx.Client, request_id: str, **body: Any) -> httpx.Response:
    """A chat completion for the fleet's model ``gpt``, tagged ``request_id``."""
    payload = {"model": "gpt", "messages": [{"role": "user", "content": "hello"}], **body}
    return client.post("/v1/chat/completions", json=payload, headers={"x-request-id": request_id})
