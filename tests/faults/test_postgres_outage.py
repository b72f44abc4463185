"""PostgreSQL stopped under load and started again (issue 15, item 5): ``revoctl serve
--workers 2`` whose limits and breakers are on the shared Redis and whose database (gateway
keys, usage rows) is a PostgreSQL cluster of the test's own, under steady load from several
clients. While the database is away the gateway keeps answering (keys are checked in memory,
usage rows wait in the buffer, both workers stay ready); once it is back every row arrives,
none twice.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.fleet import ANTHROPIC_KEY, OPENAI_KEY, Fleet, build_fleet
from tests.support.llm_standin import LLMStandIn
from tests.support.postgres_servers import PostgresServer
from tests.support.request_logs import WRITE_SECONDS, ask, wait_for_rows

pytestmark = [pytest.mark.redis, pytest.mark.slow]

OUTAGE_SECONDS = 3.0
"""How long PostgreSQL stays stopped."""
CLIENTS = 4
PACE_SECONDS = 0.02
"""Each client's pause between requests: steady load, not a flood (and far from the limits)."""
ANSWERS_BEFORE_AND_AFTER = 20
"""Answers the load must have had before the outage starts, and again after it ends."""


@dataclass
class Load:
    """Clients asking in a loop, each request with its own id, until `stop`."""

    fleet: Fleet
    key: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    answers: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for client in range(CLIENTS):
            thread = threading.Thread(target=self._ask, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _ask(self, client: int) -> None:
        with self.fleet.client(self.key) as http:
            for n in range(1_000_000):
                if self._stop.is_set():
                    return
                request_id = f"load-{self.run}-{client}-{n}"
                try:
                    self.answers[request_id] = ask(http, request_id).status_code
                except httpx.HTTPError as exc:  # a dropped connection, a timeout
                    self.failures.append(f"{request_id}: {type(exc).__name__}: {exc}")
                self._stop.wait(PACE_SECONDS)

    def wait_for_answers(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.answers) < count:
            assert time.monotonic() < deadline, f"only {len(self.answers)} answers"
            assert not self.failures, self.failures[:5]
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def test_postgres_stopped_under_load_loses_no_request_and_no_row_and_writes_none_twice(
    tmp_path: Path,
    private_postgres: PostgresServer,
    redis_url: str,
    redis_prefix: str,
) -> None:
    with LLMStandIn(api_key=OPENAI_KEY) as openai, LLMStandIn(api_key=ANTHROPIC_KEY) as claude:
        fleet = build_fleet(
            tmp_path,
            postgres_url=private_postgres.url,
            redis_url=redis_url,
            prefix=redis_prefix,
            openai=openai,
            anthropic=claude,
            workers=2,
            rpm=10_000_000,
            tpm=1_000_000_000,
        )
        fleet.start()
        load = Load(fleet, fleet.new_key("steady"))
        try:
            load.start()
            load.wait_for_answers(ANSWERS_BEFORE_AND_AFTER)

            private_postgres.stop()
            stopped = time.monotonic()
            during = len(load.answers)
            down = httpx.get(f"{fleet.url}/health", timeout=30)
            assert down.status_code == 503
            assert down.json()["services"]["database"]["status"] == "unhealthy"
            for _ in range(2 * fleet.workers):  # a fresh connection each: both workers answer
                ready = httpx.get(f"{fleet.url}/health/ready", timeout=30)
                assert ready.status_code == 200, ready.text
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
            private_postgres.start()
            answered_while_down = len(load.answers) - during

            load.wait_for_answers(len(load.answers) + ANSWERS_BEFORE_AND_AFTER)
            load.stop()
            assert not load.failures, load.failures[:5]
            assert Counter(load.answers.values()) == {200: len(load.answers)}
            assert answered_while_down > 0
            answered = sorted(load.answers)
            # Before shutdown: the rows arrive because the database is back, not at the last flush.
            rows = wait_for_rows(private_postgres.url, answered, WRITE_SECONDS)
            assert rows == dict.fromkeys(answered, 1)  # every answer has its row, none has two
            healthy = httpx.get(f"{fleet.url}/health", timeout=30).json()["services"]["database"]
            assert healthy["usage_buffer"]["dropped"] == 0
        finally:
            load.stop()
            stderr = fleet.stop()
    assert "dropped" not in stderr and "Traceback" not in stderr, stderr[-3000:]
