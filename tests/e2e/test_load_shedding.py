"""Load shedding on ``revoctl serve --workers 2`` with ``[gateway] max_in_flight = 4``, in
front of a stand-in that holds every answer `DELAY` seconds (issue 19):

* 4 concurrent requests are held, and the fifth concurrent one is answered 503
  ``overloaded`` with ``Retry-After`` at once (well within the stand-in's delay), without
  reaching the provider; the 4 held ones all succeed;
* ``/health``, ``/metrics`` and ``/openapi.json`` answer while the instance sheds, and the
  metrics count the shed requests and the requests in flight;
* once the held requests end, new ones are admitted;
* a worker SIGKILLed while it holds requests does not keep its count: once uvicorn has
  restarted it, the instance admits its whole cap again.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.fleet import ANTHROPIC_KEY, OPENAI_KEY, Fleet, build_fleet, chat
from tests.support.llm_standin import LLMStandIn

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

MAX_IN_FLIGHT = 4
DELAY = 2.0
"""Seconds the stand-in holds every answer."""
SHED_BOUND = DELAY / 4
"""A shed request is answered at once: well before any held request could have ended."""
SHEDS = 5


@pytest.fixture
def fleet(tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str) -> Iterator[Fleet]:
    with LLMStandIn(api_key=OPENAI_KEY) as openai, LLMStandIn(api_key=ANTHROPIC_KEY) as claude:
        served = build_fleet(
            tmp_path,
            postgres_url=postgres_url,
            redis_url=redis_url,
            prefix=redis_prefix,
            openai=openai,
            anthropic=claude,
            workers=2,
        )
        text = served.config.read_text()
        served.config.write_text(
            text.replace("[gateway]\n", f"[gateway]\nmax_in_flight = {MAX_IN_FLIGHT}\n", 1)
        )
        served.start()
        try:
            yield served
        finally:
            served.stop()


def hold(fleet: Fleet, key: str, pool: ThreadPoolExecutor) -> list[Future[httpx.Response]]:
    """`MAX_IN_FLIGHT` requests, held by the stand-in until its delay is over."""

    def one() -> httpx.Response:
        with fleet.client(key) as client:
            return chat(client)

    held = [pool.submit(one) for _ in range(MAX_IN_FLIGHT)]
    wait_for(lambda: fleet.openai.in_flight() == MAX_IN_FLIGHT, "the held requests")
    return held


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.05)


def shed(fleet: Fleet, key: str) -> float:
    """One request beyond the cap: asserts it is shed; returns how long it took."""
    with fleet.client(key) as client:
        started = time.perf_counter()
        answer = chat(client)
        took = time.perf_counter() - started
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "1"
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "overloaded")
    return took


def workers_of(fleet: Fleet) -> set[int]:
    """The pids of the serving workers (not multiprocessing's resource tracker)."""
    return {
        pid
        for pid in fleet.worker_pids()
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    }


def metric(fleet: Fleet, name: str) -> float:
    text = httpx.get(f"{fleet.url}/metrics", timeout=10).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
    assert values, f"{name} not exported"
    return sum(values)


def test_beyond_max_in_flight_a_request_is_shed_at_once(fleet: Fleet) -> None:
    key = fleet.new_key("team")
    fleet.openai.delay = DELAY
    with ThreadPoolExecutor(MAX_IN_FLIGHT) as pool:
        held = hold(fleet, key, pool)
        took = [shed(fleet, key) for _ in range(SHEDS)]
        print(
            f"\nshed answered in {statistics.median(took) * 1000:.1f} ms median, "
            f"{max(took) * 1000:.1f} ms at most (bound {SHED_BOUND * 1000:.0f} ms)"
        )
        assert max(took) < SHED_BOUND
        assert len(fleet.openai.requests) == MAX_IN_FLIGHT  # no shed request reached it
        for path in ("/health/live", "/health", "/openapi.json"):
            assert httpx.get(fleet.url + path, timeout=5).status_code == 200, path
        assert metric(fleet, "revoctl_requests_shed_total") == SHEDS
        assert metric(fleet, "revoctl_requests_in_flight") == MAX_IN_FLIGHT
        assert all(future.result().status_code == 200 for future in held)
    fleet.openai.delay = 0.0
    with fleet.client(key) as client:
        assert chat(client).status_code == 200  # admitted again
    assert metric(fleet, "revoctl_requests_in_flight") == 0
    assert "overloaded" in fleet.output()  # the warning, once per second at most
    assert fleet.output().count("overloaded") < SHEDS


def test_a_killed_workers_requests_do_not_hold_the_cap(fleet: Fleet) -> None:
    key = fleet.new_key("team")
    fleet.openai.delay = DELAY
    workers = workers_of(fleet)
    assert len(workers) == 2
    with ThreadPoolExecutor(MAX_IN_FLIGHT) as pool:
        held = hold(fleet, key, pool)
        shed(fleet, key)
        # Which worker holds which request is the kernel's choice: kill one, and if it held
        # none, the other (which then held them all).
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            if any(future.done() and future.exception() is not None for future in held):
                break
        killed = [f for f in held if f.exception() is not None]
        assert killed, "a killed worker held none of the requests"
        assert all(f.result().status_code == 200 for f in held if f.exception() is None)
    wait_for(lambda: fleet.openai.in_flight() == 0, "the stand-in's answers")
    wait_for(
        lambda: len(workers_of(fleet)) == 2 and workers_of(fleet) != workers,
        "uvicorn's restart of the killed worker",
    )
    wait_for(lambda: httpx.get(f"{fleet.url}/health/ready", timeout=5).status_code == 200, "ready")
    with ThreadPoolExecutor(MAX_IN_FLIGHT) as pool:
        held = hold(fleet, key, pool)  # the whole cap again
        shed(fleet, key)
        assert all(future.result().status_code == 200 for future in held)
