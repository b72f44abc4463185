"""Redis servers of the tests' own, on local ports, for what the shared server must not see:
being stopped and restarted, ``SCRIPT FLUSH``, exact command counts, TLS, a password, and
a three-node Redis Cluster.

Each is the machine's ``redis-server`` run as a child process (no persistence), stopped
with the test; the shared server on 6379 is never touched. Without ``redis-server`` on
PATH the tests skip with the reason (or fail under ``REVOCTL_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis

START_SECONDS = 10.0
"""How long a server may take to answer PING after it was started."""


def free_port(first: int, last: int) -> int:
    """A port in ``first..last`` that nothing listens on (other engineers share the machine)."""
    for port in range(first, last + 1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{last}")


def missing_binaries() -> str | None:
    """Why these servers cannot run here, or None."""
    for binary in ("redis-server", "redis-cli"):
        if shutil.which(binary) is None:
            return f"{binary} is not on PATH"
    return None


class RedisServer:
    """One ``redis-server`` child on ``port``; `stop` and `start` again on the same port."""

    def __init__(self, port: int, *extra: str, password: str | None = None) -> None:
        self.port = port
        self.extra = list(extra)
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        argv = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        argv += ["--daemonize", "no", "--bind", "127.0.0.1", *self.extra]
        if self.password:
            argv += ["--requirepass", self.password]
        return argv

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.wait_until_up()

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:  # type: ignore[union-attr]
                    raise RuntimeError(f"redis-server on {self.port} did not start") from None
                time.sleep(0.05)

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisClusterServers:
    """Three cluster-enabled nodes on ``ports``, joined by ``redis-cli --cluster create``."""

    def __init__(self, ports: Sequence[int], directory: Path) -> None:
        self.nodes = [
            RedisServer(
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(directory / f"nodes-{port}.conf"),
                "--cluster-node-timeout",
                "5000",
                "--dir",
                str(directory),
            )
            for port in ports
        ]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def __enter__(self) -> RedisClusterServers:
        with contextlib.ExitStack() as stack:
            for node in self.nodes:
                stack.enter_context(node)
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            options = ["--cluster-replicas", "0", "--cluster-yes"]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *addresses, *options],
                check=True,
                capture_output=True,
                timeout=60,
            )
            self._wait_until_ok()
            stack.pop_all()
        return self

    def _wait_until_ok(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            states = []
            for node in self.nodes:
                with node.client() as client:
                    states.append(client.execute_command("CLUSTER", "INFO"))
            if all(b"cluster_state:ok" in state for state in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        for node in self.nodes:
            node.stop()


def require_binaries() -> None:
    """Skip (or, under ``REVOCTL_REQUIRE_SERVICES=1``, fail) without ``redis-server``."""
    import pytest

    from tests.conftest import REQUIRE_SERVICES

    reason = missing_binaries()
    if reason is None:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason}; REVOCTL_REQUIRE_SERVICES=1 makes this a failure", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def private_server(*extra: str, password: str | None = None) -> Iterator[RedisServer]:
    """A started `RedisServer` on a free port of 7100-7139 (``extra``: more options),
    stopped afterwards."""
    require_binaries()
    with RedisServer(free_port(7100, 7139), *extra, password=password) as server:
        yield server


class CommandCounter:
    """Counts the commands clients send to the server on ``port`` (MONITOR), leaving out
    those a script runs inside Redis: those are not round trips. Stop with `finish`."""

    END = "revoctl-monitor-end"

    def __init__(self, port: int) -> None:
        self.port = port
        self.counts: dict[str, int] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("MONITOR did not start")

    def _run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.sendall(b"MONITOR\r\n")
            stream = sock.makefile("rb")
            stream.readline()  # +OK
            self._ready.set()
            for raw in stream:
                line = raw.decode(errors="replace")
                if f'"{self.END}"' in line:
                    return
                if " lua]" in line or '"' not in line:
                    continue
                command = line.split('"')[1].upper()
                self.counts[command] = self.counts.get(command, 0) + 1

    def finish(self) -> dict[str, int]:
        """Stop counting (after every command sent so far) and return the counts."""
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            sock.sendall(f"ECHO {self.END}\r\n".encode())
            sock.recv(64)
        self._thread.join(10)
        counts = dict(self.counts)
        counts.pop("ECHO", None)
        return counts
