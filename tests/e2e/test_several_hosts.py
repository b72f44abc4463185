"""Three gateway hosts behind HAProxy, sharing one Redis and one PostgreSQL database, all on
loopback (`tests.support.several_hosts`): the gateways on 127.0.0.2, .3 and .4, HAProxy on
127.0.0.1 reaching them from 127.0.0.10 (their one trusted proxy), clients from 127.0.0.5
and up.

- a ``per_ip`` rule keys on each client's own address and is exact across the three hosts;
- ``revoctl breakers trip`` reaches every host within the CONTRACT's second, on the Redis
  store and on the PostgreSQL one (each host is asked directly: its own process refuses);
- a host killed mid-load is taken out by HAProxy's health check, and no request started
  after the check marked it down fails;
- ``revoctl db pool`` lists the three instances.

Each test prints its figures (``pytest -s`` shows them).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.support.llm_standin import LLMStandIn
from tests.support.several_hosts import (
    CLIENT_ADDRESSES,
    STANDIN_KEY,
    chat,
    client,
    several_hosts,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

CONTRACT_BOUND = 1.0
"""Seconds within which a trip reaches every instance (CONTRACT, ``breakers trip``)."""
PER_IP = 6
CLIENTS = 4
REQUESTS_PER_CLIENT = 15


@pytest.fixture
def llm() -> Iterator[LLMStandIn]:
    with LLMStandIn(api_key=STANDIN_KEY) as standin:
        yield standin


def test_a_per_ip_rule_is_exact_across_three_hosts(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str, llm: LLMStandIn
) -> None:
    with several_hosts(
        tmp_path, postgres_url=postgres_url, redis_url=redis_url, prefix=redis_prefix,
        openai_base_url=llm.openai_base_url, per_ip=PER_IP,
    ) as fleet:  # fmt: skip

        def calls(source: str) -> list[int]:
            with client(source, fleet.balancer.url) as http:
                return [chat(http).status_code for _ in range(REQUESTS_PER_CLIENT)]

        sources = CLIENT_ADDRESSES[:CLIENTS]
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            statuses = dict(zip(sources, pool.map(calls, sources), strict=True))
        served = fleet.balancer.stats()

    per_host = {name: int(row["hrsp_2xx"]) + int(row["hrsp_4xx"]) for name, row in served.items()}
    print(f"\nrequests served per host: {per_host}")
    print(f"allowed per host: { {name: int(row['hrsp_2xx']) for name, row in served.items()} }")
    for source, answered in statuses.items():
        assert Counter(answered) == {200: PER_IP, 429: REQUESTS_PER_CLIENT - PER_IP}, source
    assert sum(per_host.values()) == CLIENTS * REQUESTS_PER_CLIENT
    # Round robin spreads them: every host served some, so the count is the fleet's.
    assert all(per_host.values()), per_host
    # The limiter's own count: each client's key, none for the balancer's address.
    inspected = fleet.cli_json("limits", "inspect", "per-ip")
    assert {state["key"]: state["remaining"] for state in inspected} == dict.fromkeys(sources, 0)


def first_refusal(url: str, source: str, until: float) -> float | None:
    """When (the wall clock) ``url`` first refused a chat with its breaker open; None if it
    had not by ``until`` (monotonic). One chat every 10 ms or so: that is the resolution."""
    with client(source, url, timeout=5) as http:
        while time.monotonic() < until:
            answered = chat(http)
            if answered.status_code == 503:
                assert answered.json()["error"]["code"] == "circuit_open", answered.text
                return time.time()
            assert answered.status_code == 200, answered.text
            time.sleep(0.01)
    return None


@pytest.mark.parametrize("store", ["redis", "sql"])
def test_a_trip_from_the_cli_reaches_every_host_within_a_second(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    redis_prefix: str,
    llm: LLMStandIn,
    store: str,
) -> None:
    with several_hosts(
        tmp_path, postgres_url=postgres_url, redis_url=redis_url, prefix=redis_prefix,
        openai_base_url=llm.openai_base_url, breakers=store,
    ) as fleet:  # fmt: skip
        for host in fleet.hosts:  # every host serves (and its breaker is closed) before the trip
            with client(CLIENT_ADDRESSES[0], host.url) as http:
                assert chat(http).status_code == 200
        until = time.monotonic() + 30
        with ThreadPoolExecutor(max_workers=len(fleet.hosts)) as pool:
            polls = [
                pool.submit(first_refusal, host.url, source, until)
                for host, source in zip(fleet.hosts, CLIENT_ADDRESSES, strict=False)
            ]
            started = time.time()
            tripped = fleet.cli("breakers", "trip", "openai_api", "--reason", "hosts test")
            returned = time.time()
            seen = {host.name: poll.result() for host, poll in zip(fleet.hosts, polls, strict=True)}
        assert tripped.returncode == 0, tripped.stderr
        [status] = fleet.cli_json("breakers", "status", "openai_api")
        trip = fleet.cli_json("breakers", "history", "openai_api")[0]

    # When the trip was written: the time its transition was recorded, in the write's own
    # transaction (Redis: its script), on the store's clock (Redis TIME, PostgreSQL
    # clock_timestamp()): on this machine the same clock as time.time().
    assert (trip["to"], trip["actor"] is not None) == ("forced_open", True), trip
    written = datetime.fromisoformat(trip["at"]).timestamp()
    reached = {name: None if t is None else round(t - written, 3) for name, t in seen.items()}
    print(
        f"\n{store}: the command ran {returned - started:.3f} s (written after"
        f" {written - started:.3f} s); seconds from the write to each host's first refusal:"
        f" {reached}"
    )
    assert status["state"] == "forced_open"
    assert started <= written <= returned
    for name, delay in reached.items():
        assert delay is not None and 0 <= delay <= CONTRACT_BOUND, (name, reached)


def test_a_host_killed_mid_load_is_taken_out_and_nothing_fails_after_the_mark(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str, llm: LLMStandIn
) -> None:
    outcomes: list[tuple[float, bool]] = []  # each request's start (wall clock) and success
    failures: list[str] = []
    stop = threading.Event()

    def load(source: str) -> None:
        with client(source, fleet.balancer.url) as http:
            while not stop.is_set():
                began = time.time()
                try:
                    answered = chat(http)
                    ok = answered.status_code == 200
                    failed = f"{answered.status_code} {answered.text[:80]}"
                except httpx.HTTPError as exc:
                    ok, failed = False, repr(exc)
                outcomes.append((began, ok))
                if not ok:
                    failures.append(f"{began:.6f} {source}: {failed}")

    with several_hosts(
        tmp_path, postgres_url=postgres_url, redis_url=redis_url, prefix=redis_prefix,
        openai_base_url=llm.openai_base_url,
    ) as fleet:  # fmt: skip
        victim = fleet.hosts[1]
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            running = [pool.submit(load, source) for source in CLIENT_ADDRESSES[:CLIENTS]]
            time.sleep(2)
            served_before = int(fleet.balancer.stats()[victim.name]["hrsp_2xx"])
            killed_at = time.time()
            victim.kill()
            fleet.balancer.wait_until(victim.name, "DOWN")
            time.sleep(3)
            stop.set()
            for done in running:
                done.result()
        marks = fleet.balancer.marked_down()
        states = {name: row["status"] for name, row in fleet.balancer.stats().items()}

    assert set(marks) == {victim.name}, marks
    mark = marks[victim.name].timestamp()
    before = [ok for began, ok in outcomes if began < mark]
    after = [ok for began, ok in outcomes if began >= mark]
    between = [ok for began, ok in outcomes if killed_at <= began < mark]
    print(
        f"\n{len(outcomes)} requests; killed {victim.name}, marked down"
        f" {mark - killed_at:.3f} s later ({datetime.fromtimestamp(mark).isoformat()});"
        f" failed before the mark: {before.count(False)} of {len(before)}"
        f" ({between.count(False)} of the {len(between)} started after the kill),"
        f" after: {after.count(False)} of {len(after)}"
    )
    print("failed (start, client: what):", *failures, sep="\n  ")
    assert served_before > 0  # it was serving its share when it was killed
    assert states[victim.name].startswith("DOWN")
    assert len(after) > 0 and all(after)


def test_db_pool_and_status_list_every_host(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str, llm: LLMStandIn
) -> None:
    with several_hosts(
        tmp_path, postgres_url=postgres_url, redis_url=redis_url, prefix=redis_prefix,
        openai_base_url=llm.openai_base_url,
    ) as fleet:  # fmt: skip
        pids = {host.pid for host in fleet.hosts}
        deadline = time.monotonic() + 30
        while True:
            pool = fleet.cli_json("db", "pool")
            reported = {int(i["instance"].split(":")[-2]) for i in pool["instances"]}
            if reported >= pids or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for host in fleet.hosts:  # each host's /status lists the three instances
            shown = httpx.get(f"{host.url}/status.json", timeout=10).json()["pools"]["instances"]
            assert {int(i["instance"].split(":")[-2]) for i in shown} == pids, host.name
    print(f"\ndb pool instances: {[i['instance'] for i in pool['instances']]}")
    assert reported == pids
    assert not any(instance["stale"] for instance in pool["instances"])
    runtime = {row["application_name"] for row in pool["connections"]}
    assert {int(name.split(":")[-2]) for name in runtime if name.endswith(":runtime")} == pids
