"""Reservations on `RedisLimitStore` are exact across processes: 4 processes x 50 concurrent
reservations on one account admit exactly what fits its budget, never hold more than its
slot cap, on one node and on a Redis Cluster, and stay exact while the cluster's
connections drop.

Each process is `tests.support.redis_reservations_worker`, started together by a line on stdin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_sync

from tests.integration.test_limits_exactness import ConnectionDropper
from tests.support import redis_reservations_worker as worker
from tests.support.redis_servers import RedisClusterServers, free_port, require_binaries

pytestmark = [pytest.mark.redis, pytest.mark.slow]

REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    require_binaries()
    ports: list[int] = []
    for _ in range(3):
        ports.append(free_port((ports[-1] + 1) if ports else 7150, 7199))
    with RedisClusterServers(ports, tmp_path_factory.mktemp("cluster")) as servers:
        yield servers


def run_workers(
    url: str,
    cluster: bool,
    prefix: str,
    mode: str,
    processes: int,
    tasks: int,
    started: threading.Event | None = None,
) -> list[dict[str, int]]:
    """Start the processes, wait until each has its store open, start them together (and
    set ``started``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "tests.support.redis_reservations_worker", url, str(int(cluster))]
    workers = [
        subprocess.Popen(
            [*argv, prefix, mode, str(tasks)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for _ in range(processes)
    ]
    try:
        for process in workers:
            line = process.stdout.readline()  # type: ignore[union-attr]
            assert line.strip() == "ready", process.stderr.read()  # type: ignore[union-attr]
        for process in workers:
            process.stdin.write("go\n")  # type: ignore[union-attr]
            process.stdin.flush()  # type: ignore[union-attr]
        if started is not None:
            started.set()
        counts = []
        for process in workers:
            out, err = process.communicate(timeout=180)
            assert process.returncode == 0, err
            counts.append(json.loads(out.strip().splitlines()[-1]))
        return counts
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait()


def assert_budget_exact(counts: list[dict[str, int]]) -> None:
    assert sum(c["amount"] for c in counts) <= worker.LIMIT
    assert sum(c["admitted"] for c in counts) == worker.FIT


def assert_cap_kept(counts: list[dict[str, int]]) -> None:
    assert max(c["highest"] for c in counts) <= worker.CAP, counts
    assert sum(c["held"] for c in counts) >= worker.CAP  # slots were taken and freed


@pytest.mark.parametrize("mode", ["budget", "slot"])
def test_exact_across_processes(redis_url: str, redis_prefix: str, mode: str) -> None:
    """4 processes x 50 concurrent reservations on one account."""
    counts = run_workers(redis_url, False, redis_prefix, mode, processes=4, tasks=50)
    client = redis_sync.Redis.from_url(redis_url)
    account = f"{{{worker.ACCOUNT}}}:{worker.ACCOUNT}"
    if mode == "budget":
        assert_budget_exact(counts)
        spent = client.get(f"{redis_prefix}_budget:{account}:0")
        assert int(spent or 0) == worker.FIT * worker.AMOUNT
    else:
        assert_cap_kept(counts)
        assert client.zcard(f"{redis_prefix}_slots:{account}") == 0  # every slot released
    client.close()


@pytest.mark.parametrize("mode", ["budget", "slot"])
def test_exact_across_processes_on_a_cluster(cluster: RedisClusterServers, mode: str) -> None:
    counts = run_workers(cluster.url, True, f"exact-{mode}:", mode, processes=4, tasks=50)
    if mode == "budget":
        assert_budget_exact(counts)
    else:
        assert_cap_kept(counts)


def test_a_cluster_budget_stays_exact_while_its_connections_drop(
    cluster: RedisClusterServers,
) -> None:
    """Reservations whose replies were lost are sent again by the cluster client, or by the
    store after the transport broke under them: each is charged once (its receipt)."""
    started = threading.Event()
    dropper = ConnectionDropper(cluster, started, every=40, times=3)  # of 200 reservations
    try:
        counts = run_workers(cluster.url, True, "dropped:", "budget", 4, 50, started)
    finally:
        dropped = dropper.stop()
    assert dropped >= 1
    assert_budget_exact(counts)
