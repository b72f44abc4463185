"""A 3 s PostgreSQL outage under a gateway whose limits and breakers are on the database,
with the `database` breaker guarding revoctl's own calls and without (issue 21): the time
to answer 500 requests sent as the outage starts, before (``guard_own_calls = false``) and
after. With the guard, once the breaker opens each request's database work is refused at
once and the limiter's ``failure_mode`` answers, instead of each waiting out the driver's
connect and its retries.

Run: ``./.venv/bin/python -m pytest tests/faults/test_database_guard_outage.py -q -s``
(``-s`` prints the figures).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fleet import ANTHROPIC_KEY, OPENAI_KEY, chat
from tests.support.guarded_fleet import build_guarded_fleet
from tests.support.llm_standin import LLMStandIn
from tests.support.postgres_servers import PostgresServer

pytestmark = [pytest.mark.slow]

OUTAGE_SECONDS = 3.0
REQUESTS = 500
CLIENTS = 10


@dataclass
class Outcome:
    seconds: float
    """From the stop to the last of the `REQUESTS` answers."""
    within_outage: int
    """Answers that came before PostgreSQL was started again."""
    statuses: Counter[int]
    opened: bool
    """Whether the `database` breaker opened (its history has a transition to ``open``)."""


def outage(tmp_path: Path, server: PostgresServer, *, guard: bool) -> Outcome:
    with LLMStandIn(api_key=OPENAI_KEY) as openai, LLMStandIn(api_key=ANTHROPIC_KEY) as claude:
        fleet = build_guarded_fleet(
            tmp_path / ("after" if guard else "before"),
            postgres_url=server.url,
            openai=openai,
            anthropic=claude,
            guard=guard,
        )
        reset = fleet.cli("breakers", "reset", "--all")  # an earlier run may have left records
        assert reset.returncode == 0, reset.stderr
        fleet.start()
        try:
            key = fleet.new_key("after" if guard else "before")
            with fleet.client(key) as http:
                for _ in range(20):  # warm: the pool, the keys, the limiter's store
                    assert chat(http).status_code == 200
            restarted = threading.Event()
            server.stop()
            stopped = time.monotonic()
            timer = threading.Timer(OUTAGE_SECONDS, lambda: (server.start(), restarted.set()))
            timer.start()
            answered_at: list[float] = []
            statuses: Counter[int] = Counter()
            lock = threading.Lock()

            def client(count: int) -> None:
                with fleet.client(key) as http:
                    for _ in range(count):
                        status = chat(http).status_code
                        with lock:
                            statuses[status] += 1
                            answered_at.append(time.monotonic())

            with ThreadPoolExecutor(CLIENTS) as pool:
                list(pool.map(client, [REQUESTS // CLIENTS] * CLIENTS))
            seconds = time.monotonic() - stopped
            timer.join()
            back = stopped + OUTAGE_SECONDS
            history = fleet.cli_json("breakers", "history", "database")
            opened = any(each["to"] == "open" for each in history)
            return Outcome(seconds, sum(1 for at in answered_at if at < back), statuses, opened)
        finally:
            if not server.running():
                server.start()
            stderr = fleet.stop()
            assert "Traceback" not in stderr, stderr[-3000:]


def test_the_guard_answers_500_requests_faster_during_a_database_outage(
    tmp_path: Path, private_postgres: PostgresServer
) -> None:
    before = outage(tmp_path, private_postgres, guard=False)
    after = outage(tmp_path, private_postgres, guard=True)
    for name, run in (("before (guard off)", before), ("after (guard on)", after)):
        print(
            f"\n{name}: {REQUESTS} requests answered in {run.seconds:.2f}s, "
            f"{run.within_outage} within the {OUTAGE_SECONDS:g}s outage, "
            f"statuses {dict(run.statuses)}, database breaker opened: {run.opened}"
        )
    # The limiter's failure_mode ("open") answers for its store in both runs; only the
    # guarded run has the `database` breaker judge the calls and open.
    assert before.statuses == after.statuses == {200: REQUESTS}
    assert after.opened and not before.opened


async def database_calls_during_outage(server: PostgresServer, *, guard: bool) -> float:
    """Seconds for `REQUESTS` database calls (`CLIENTS` at a time) on a stopped server."""
    import asyncio

    from sqlalchemy import text

    from revoctl.core.breakers import CircuitBreaker
    from revoctl.core.breakers._guard import BreakerGuard
    from revoctl.core.breakers.settings import BreakersConfig
    from revoctl.core.db import DatabaseConfig, DatabaseManager
    from revoctl.core.errors import BackendUnavailableError

    async with DatabaseManager(DatabaseConfig(url=server.url)) as db:
        if guard:
            breaker = CircuitBreaker(BreakersConfig().config_for("database"))
            db.guard = BreakerGuard(lambda: breaker)
        await db.read("SELECT 1")
        server.stop()
        try:
            started = time.monotonic()
            slots = asyncio.Semaphore(CLIENTS)

            async def call() -> None:
                async with slots:
                    with pytest.raises(BackendUnavailableError):
                        await db.transaction(lambda s: s.execute(text("SELECT 1")))

            await asyncio.gather(*(call() for _ in range(REQUESTS)))
            return time.monotonic() - started
        finally:
            server.start()


async def test_database_calls_fail_fast_once_the_breaker_opens(
    private_postgres: PostgresServer,
) -> None:
    before = await database_calls_during_outage(private_postgres, guard=False)
    after = await database_calls_during_outage(private_postgres, guard=True)
    print(
        f"\n{REQUESTS} database calls ({CLIENTS} at a time) on a stopped PostgreSQL: "
        f"{before:.2f}s before (no guard), {after:.2f}s after (the database breaker)"
    )
    assert after < before
