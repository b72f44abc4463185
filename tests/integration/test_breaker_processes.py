"""The fleet with real processes: runtime processes calling a breaker in a loop, and
``revoctl breakers`` run as an operator would, on SQLite, PostgreSQL and Redis.

* a trip stops every process, and a reset resumes every one, within one second: the
  bound checked is the configured ``poll_interval`` plus three times that as the margin,
  the CONTRACT's one second (a busy 2-core CI machine delays a poll by more than one interval);
* processes meeting an open breaker after its recovery timeout send exactly
  ``success_threshold`` trial calls between them, then all resume;
* Redis stopped mid-run: every process goes on with its own state (calls go through,
  trips and trials happen locally), the CLI says the store is unreachable (exit 4),
  health says degraded, and once Redis is back a trip reaches everyone again.

Measured propagation times are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_SERVICES, run_revoctl
from tests.support.breakers import ALL_BREAKER_STORES, Target, store_target

pytestmark = pytest.mark.slow

REPO = Path(__file__).parents[2]
POLL = 0.25
"""The poll interval the processes are configured with (the default is 0.5 s)."""
BOUND = POLL + 3 * POLL
"""Longest a trip or reset may take to reach every process: one poll and a margin, the
CONTRACT's one second."""
START_TIMEOUT = 120.0
"""Processes importing SQLAlchemy at once on a busy 2-core machine start slowly."""
BREAKER = "openai_api"
WORKER = [sys.executable, "-m", "tests.support.breaker_worker", BREAKER]

Event = tuple[str, float, str]


class Fleet:
    """``count`` worker processes (``tests/support/breaker_worker.py``) on one store."""

    def __init__(self, directory: Path, environ: dict[str, str], count: int) -> None:
        directory.mkdir()
        self.mode = directory / "mode"
        self.mode.write_text("ok")
        self.stop_file = directory / "stop"
        self.environ = {**os.environ, **environ, "PYTHONPATH": str(REPO)}
        self.logs = [directory / f"worker-{i}.log" for i in range(count)]
        self.errors = [directory / f"worker-{i}.err" for i in range(count)]
        self.procs = [
            self._spawn(log, err) for log, err in zip(self.logs, self.errors, strict=True)
        ]

    def _spawn(self, log: Path, err: Path) -> subprocess.Popen[bytes]:
        with err.open("w") as stderr:
            return subprocess.Popen(
                [*WORKER, str(log), str(self.mode), str(self.stop_file)],
                cwd=REPO,
                env=self.environ,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    def events(self, index: int) -> list[Event]:
        if not self.logs[index].exists():
            return []
        found = []
        for line in self.logs[index].read_text().splitlines():
            event, at, *detail = line.split(" ", 2)
            found.append((event, float(at), detail[0] if detail else ""))
        return found

    def wait_all(self, check: Callable[[list[Event]], bool], timeout: float, what: str) -> None:
        self.wait_each(lambda i: check(self.events(i)), timeout, what)

    def wait_each(self, check: Callable[[int], bool], timeout: float, what: str) -> None:
        """Until ``check(index)`` holds for every worker; fails past ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            pending = [i for i in range(len(self.procs)) if not check(i)]
            if not pending:
                return
            for i in pending:
                if self.procs[i].poll() is not None:
                    pytest.fail(f"worker {i} exited: {self.errors[i].read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: workers {pending} did not get there in {timeout:g}s")
            time.sleep(0.02)

    def first(self, index: int, event: str, since: float) -> float | None:
        return next((at for e, at, _ in self.events(index) if e == event and at >= since), None)

    def reached(self, event: str, since: float, timeout: float) -> list[float]:
        """When each worker first logged ``event`` at or after ``since`` (epoch seconds)."""
        self.wait_all(
            lambda events: any(e == event and at >= since for e, at, _ in events),
            timeout,
            f"'{event}' after {since:.3f}",
        )
        return [self.first(i, event, since) or 0.0 for i in range(len(self.procs))]

    def alive_count(self, index: int) -> int:
        counts = [int(detail) for event, _, detail in self.events(index) if event == "alive"]
        return counts[-1] if counts else 0

    def close(self) -> None:
        self.stop_file.touch()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """The store (set up before `fleet`, so that the workers stop before it is cleaned up)."""
    found = store_target(request.param, request, tmp_path)
    migrate(found)
    return found


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[[Target, int, dict[str, str]], Fleet]]:
    started: list[Fleet] = []

    def start(target: Target, count: int, settings: dict[str, str]) -> Fleet:
        made = Fleet(tmp_path / f"fleet-{len(started)}", {**target.environ(), **settings}, count)
        started.append(made)
        made.wait_all(
            lambda events: any(e == "ready" for e, _, _ in events), START_TIMEOUT, "start"
        )
        return made

    yield start
    for made in started:
        made.close()


def revoctl(target_env: dict[str, str], *args: str) -> dict[str, object]:
    result = run_revoctl([*args, "-o", "json"], env=target_env, timeout=120)
    assert result.returncode == 0, result.stderr
    document: dict[str, object] = json.loads(result.stdout)
    return document


def store_time(item: dict[str, object]) -> float:
    """The store's clock when it wrote ``item`` (its ``changed_at``)."""
    return datetime.fromisoformat(str(item["changed_at"])).timestamp()


def settings(**breaker: object) -> dict[str, str]:
    env = {
        "REVOCTL_BREAKERS__POLL_INTERVAL": str(POLL),
        "REVOCTL_BREAKERS__REPORT_INTERVAL": str(POLL * 2),
    }
    for key, value in breaker.items():
        env[f"REVOCTL_BREAKERS__SERVICES__{BREAKER.upper()}__{key.upper()}"] = str(value)
    return env


def migrate(target: Target) -> None:
    if target.store == "sql":
        result = run_revoctl(["db", "migrate"], env=target.environ(), timeout=120)
        assert result.returncode == 0, result.stderr


def report(what: str, delays: list[float]) -> None:
    print(
        f"\n{what}: {len(delays)} processes, median {statistics.median(delays) * 1000:.0f} ms, "
        f"max {max(delays) * 1000:.0f} ms (bound {BOUND * 1000:.0f} ms)"
    )


@pytest.mark.parametrize(
    "target", [p for p in ALL_BREAKER_STORES if p.values[0] != "memory"], indirect=True
)
def test_trip_stops_every_process_and_reset_resumes_them_within_a_second(
    target: Target, fleet: Callable[..., Fleet]
) -> None:
    kind = target.kind
    env = {**target.environ(), **settings(timeout=5)}
    workers = fleet(target, 8, settings(timeout=5))
    workers.wait_all(lambda ev: any(e == "allowed" for e, _, _ in ev), 30, "first calls")

    tripped = revoctl(env, "breakers", "trip", BREAKER, "--reason", "fleet test")
    assert tripped["state"] == "forced_open"
    delays = [
        at - store_time(tripped) for at in workers.reached("rejected", store_time(tripped), 30)
    ]
    report(f"{kind} trip", delays)
    assert max(delays) <= BOUND

    status = revoctl(env, "breakers", "status", BREAKER)
    [item] = status  # type: ignore[misc]
    assert item["state"] == "forced_open"

    reset = revoctl(env, "breakers", "reset", BREAKER)
    assert reset["state"] == "closed"
    delays = [at - store_time(reset) for at in workers.reached("allowed", store_time(reset), 30)]
    report(f"{kind} reset", delays)
    assert max(delays) <= BOUND

    time.sleep(POLL * 4)  # a report round: every process shows in the fleet view
    [item] = revoctl(env, "breakers", "status", BREAKER)  # type: ignore[misc]
    assert item["processes"] == 8
    assert all(not entry["stale"] for entry in item["fleet"])


@pytest.mark.parametrize(
    "target", [p for p in ALL_BREAKER_STORES if p.values[0] in ("redis", "postgres")], indirect=True
)
def test_twenty_processes_send_exactly_success_threshold_trial_calls(
    target: Target, fleet: Callable[..., Fleet]
) -> None:
    trials = 3
    recovery = 2.0
    kind = target.kind
    workers = fleet(
        target,
        20,
        settings(
            failure_threshold=3,
            success_threshold=trials,
            recovery_timeout=recovery,
            timeout=5,
        ),
    )
    workers.mode.write_text("fail")
    workers.wait_all(lambda ev: any(e == "rejected" for e, _, _ in ev), 30, "opened")
    opened_at = time.time()
    workers.mode.write_text("ok:0.2")  # the provider is back, and answers slowly
    resumed = workers.reached("allowed", opened_at, recovery * 10)

    sent = sum(1 for i in range(20) for event, _, _ in workers.events(i) if event == "trial")
    print(f"\n{kind}: 20 processes sent {sent} trial calls (success_threshold {trials})")
    assert sent == trials
    assert min(resumed) - opened_at >= 0
    env = {**target.environ(), **settings()}
    history = run_revoctl(["breakers", "history", BREAKER, "-o", "json"], env=env, timeout=120)
    transitions = [entry["to"] for entry in json.loads(history.stdout)]
    assert transitions[:3] == ["closed", "half_open", "open"]


def free_port() -> int:
    for port in range(7200, 7300):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    pytest.fail("no free port in 7200-7299")


def start_redis(port: int, directory: Path) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return server
        time.sleep(0.05)
    server.kill()
    pytest.fail(f"redis-server did not listen on {port}")


def stop_redis(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(timeout=20)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, Callable[[], None], Callable[[], None]]]:
    if shutil.which("redis-server") is None:
        reason = "redis-server is not on PATH"
        if REQUIRE_SERVICES:
            pytest.fail(f"{reason}; REVOCTL_REQUIRE_SERVICES=1 makes this a failure")
        pytest.skip(reason)
    port = free_port()
    servers = [start_redis(port, tmp_path)]

    def stop() -> None:
        stop_redis(servers[-1])

    def restart() -> None:
        servers.append(start_redis(port, tmp_path))

    yield port, stop, restart
    for server in servers:
        if server.poll() is None:
            stop_redis(server)


@pytest.mark.redis
def test_redis_stopped_mid_run_processes_go_on_alone_and_rejoin(
    fleet: Callable[..., Fleet], own_redis: tuple[int, Callable[[], None], Callable[[], None]]
) -> None:
    port, stop, restart = own_redis
    recovery = 1.0
    target = Target("redis", f"redis://127.0.0.1:{port}/0", "fault-test:")
    breaker = settings(
        failure_threshold=2, success_threshold=1, recovery_timeout=recovery, timeout=2
    )
    env = {**target.environ(), **breaker}
    workers = fleet(target, 4, breaker)
    workers.wait_all(lambda ev: any(e == "allowed" for e, _, _ in ev), 30, "first calls")

    stopped_at = time.time()
    stop()
    workers.wait_all(
        lambda ev: any(e == "plane" and d == "unreachable" for e, _, d in ev), 30, "see outage"
    )
    before = [workers.alive_count(i) for i in range(4)]
    workers.wait_each(lambda i: workers.alive_count(i) > before[i], 30, "calls go on")
    assert all(workers.alive_count(i) > before[i] for i in range(4))  # calls go on

    cli = run_revoctl(["breakers", "status"], env=env, timeout=120)
    assert cli.returncode == 4 and cli.stderr.startswith("error: cannot reach Redis")
    health = run_revoctl(["health", "-o", "json"], env=env, timeout=120)
    breakers = json.loads(health.stdout)["services"]["circuit_breakers"]
    assert (breakers["status"], breakers["control_plane"]["status"]) == ("degraded", "unreachable")

    workers.mode.write_text("fail")  # each process trips on its own ...
    workers.wait_all(
        lambda ev: any(e == "rejected" and at > stopped_at for e, at, _ in ev), 30, "trip"
    )
    tripped_at = time.time()
    workers.mode.write_text("ok")  # ... and recovers on its own trial call
    workers.reached("allowed", tripped_at, recovery * 10)

    restart()
    workers.wait_all(
        lambda ev: [d for e, _, d in ev if e == "plane"][-1:] == ["ok"], 30, "see Redis back"
    )
    tripped = revoctl(env, "breakers", "trip", BREAKER, "--reason", "after the outage")
    delays = [
        at - store_time(tripped) for at in workers.reached("rejected", store_time(tripped), 30)
    ]
    report("redis trip after restart", delays)
    assert max(delays) <= BOUND
