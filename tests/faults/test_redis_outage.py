"""Redis stopped under gateway load: ``revoctl serve --workers 2`` with its limits and breakers
on a Redis server of the test's own, PostgreSQL (keys, usage rows) on the shared server, and
clients sending requests without pause. The Redis process is killed (SIGKILL, as a crash or
an evicted pod) for 3 s and started again on the same port, empty.

What an operator relies on: while Redis is away the limiter's ``failure_mode`` answers and the
breakers decide alone, so no request fails and no connection is dropped; once it is back, an
operator's trip reaches every worker within 2 s.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.fleet import ANTHROPIC_KEY, OPENAI_KEY, Fleet, build_fleet, chat
from tests.support.llm_standin import LLMStandIn
from tests.support.redis_servers import RedisServer, private_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

OUTAGE_SECONDS = 3.0
TRIP_BOUND = 2.0
"""Seconds, after Redis is back, within which an operator's trip reaches every worker."""
CLIENTS = 12


class Load:
    """``CLIENTS`` threads sending chat requests back to back until stopped; every answer's
    status and every transport error is counted."""

    def __init__(self, fleet: Fleet, key: str) -> None:
        self.fleet = fleet
        self.key = key
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self.models: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(CLIENTS)]

    def _run(self) -> None:
        with self.fleet.client(self.key) as client:
            while not self._stop.is_set():
                try:
                    answer = chat(client)
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                with self._lock:
                    self.statuses[answer.status_code] += 1
                    if answer.status_code == 200:
                        self.models[answer.json()["model"]] += 1

    def total(self) -> int:
        with self._lock:
            return sum(self.statuses.values()) + len(self.errors)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def crash(server: RedisServer) -> None:
    """SIGKILL: no shutdown, every connection cut."""
    assert server.process is not None
    server.process.kill()
    server.process.wait()
    server.process = None


def wait_for_answers(load: Load, more: int, timeout: float = 60) -> None:
    target = load.total() + more
    deadline = time.monotonic() + timeout
    while load.total() < target:
        assert time.monotonic() < deadline, f"the load stalled at {load.total()} requests"
        time.sleep(0.05)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with private_server() as server:
        yield server


@pytest.fixture
def fleet(tmp_path: Path, postgres_url: str, redis_server: RedisServer) -> Iterator[Fleet]:
    with LLMStandIn(api_key=OPENAI_KEY) as openai, LLMStandIn(api_key=ANTHROPIC_KEY) as claude:
        running = build_fleet(
            tmp_path,
            postgres_url=postgres_url,
            redis_url=redis_server.url,
            prefix="outage:",
            openai=openai,
            anthropic=claude,
            rpm=1_000_000_000,  # the limits are charged on Redis, but never the reason to refuse
            tpm=1_000_000_000,
        )
        running.start()
        try:
            yield running
        finally:
            print(running.stop()[-5000:])  # shown when the test fails


def test_a_redis_crash_under_load_fails_no_request_and_a_trip_reaches_every_worker_after(
    fleet: Fleet, redis_server: RedisServer
) -> None:
    key = fleet.new_key("outage")
    with Load(fleet, key) as load:
        wait_for_answers(load, 200)
        crash(redis_server)
        time.sleep(OUTAGE_SECONDS)
        during = load.total()
        redis_server.start()
        wait_for_answers(load, 200)
        assert load.total() - during >= 200  # the gateway kept answering after Redis came back

        tripped = fleet.cli("breakers", "trip", "openai_api", "--reason", "after the outage")
        assert tripped.returncode == 0, tripped.stderr
        time.sleep(TRIP_BOUND)
        fleet.openai.reset()
        wait_for_answers(load, 200)
        assert fleet.openai.requests == [], "a worker still calls the tripped provider"
    print(
        f"redis outage: {load.total()} requests, answered {sum(load.statuses.values())}, "
        f"failed {len(load.errors)}, statuses {dict(load.statuses)}"
    )
    assert load.errors == []  # no dropped connection
    assert set(load.statuses) == {200}, dict(load.statuses)  # no 500, no refusal
    assert load.models["sonnet"] >= 200  # after the trip, every worker's answers fell back
