"""The benchmark's own Redis: a ``redis-server`` child on a free port, no persistence.

Every case that uses Redis (revoctl's protections, LiteLLM's router limits) talks to it
and to nothing else, so the shared server other people use sees none of this load, and
the commands counted on it are the measured case's alone: `Monitor` (``MONITOR``, which
tells a client's command from one a script runs, for the round-trip count of a short run
of its own) and `CommandCount` (``INFO commandstats`` around a measured case, no cost to
it; it counts a script's inner commands too). Keys are checked and removed under a
prefix (`keys_under`), the parallel slots held read from their sorted sets (`slots_held`).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from .servers import free_port, stop

OWN_COMMANDS = frozenset({"config|resetstat", "config", "info", "ping", "scan", "del"})
"""The benchmark's own commands on the server, left out of every count."""


@contextlib.contextmanager
def bench_redis() -> Iterator[tuple[str, int]]:
    """A ``redis-server`` of this run's own; its URL and pid.

    :raises RuntimeError: ``redis-server`` is not on PATH, or did not answer.
    """
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not on PATH")
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--daemonize", "no"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis.from_url(url, socket_timeout=1) as client:
                    client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not answer within 10 s") from None
                time.sleep(0.05)
        yield url, process.pid
    finally:
        stop(process, 10)


@dataclass
class CommandCount:
    """The commands clients sent ``url`` between `start` and `finish`, by name."""

    url: str
    calls: dict[str, int] | None = None
    seconds: float = 0.0
    _started: float = 0.0

    def start(self) -> None:
        with redis.Redis.from_url(self.url) as client:
            client.config_resetstat()
        self._started = time.perf_counter()

    def finish(self) -> CommandCount:
        with redis.Redis.from_url(self.url) as client:
            stats = client.info("commandstats")
        self.seconds = time.perf_counter() - self._started
        self.calls = {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in stats.items()
            if name.removeprefix("cmdstat_") not in OWN_COMMANDS
        }
        return self

    @property
    def total(self) -> int:
        return sum((self.calls or {}).values())

    def of(self, command: str) -> int:
        return (self.calls or {}).get(command, 0)

    def describe(self) -> str:
        return ", ".join(f"{name} {n}" for name, n in sorted((self.calls or {}).items()))


_MONITOR_LINE = re.compile(r'^[0-9.]+ \[\d+ ([^\]]+)\] "([^"]+)"(?: "([^"]*)")?')
MARK = "gwbench-mark"


class Monitor:
    """``redis-cli monitor`` into ``log`` while open; `mark` starts a window of the count,
    `windows` gives each window's commands as ``"client EVALSHA"`` or ``"lua GET"``."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None
        self._client: redis.Redis
        self._own = ""

    def __enter__(self) -> Monitor:
        self._client = redis.Redis.from_url(self.url)
        self._own = str(self._client.client_info()["addr"])  # its commands are not counted
        with self.log.open("wb") as out:
            self._process = subprocess.Popen(["redis-cli", "-u", self.url, "monitor"], stdout=out)
        deadline = time.monotonic() + 10
        while b"OK" not in self.log.read_bytes():
            if time.monotonic() > deadline:
                raise RuntimeError("redis-cli monitor did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            stop(self._process, 5)
        self._client.close()

    def mark(self, label: str) -> None:
        """Begin the window ``label`` (the previous one ends)."""
        self._client.echo(f"{MARK}:{label}")

    def windows(self) -> dict[str, Counter[str]]:
        found: dict[str, Counter[str]] = {}
        current: Counter[str] | None = None
        for line in self.log.read_text(errors="replace").splitlines():
            match = _MONITOR_LINE.match(line)
            if match is None:
                continue
            source, command, first = match.groups()
            if command.upper() == "ECHO" and first and first.startswith(MARK + ":"):
                current = found.setdefault(first.split(":", 1)[1], Counter())
            elif current is not None and source != self._own:
                kind = "lua" if source == "lua" else "client"
                current[f"{kind} {command.upper()}"] += 1
        return found


def keys_under(url: str, prefix: str, *, delete: bool) -> int:
    """How many keys start with ``prefix`` (deleted when ``delete``)."""
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if delete and keys:
            client.delete(*keys)
        return len(keys)


def slots_held(url: str, prefix: str) -> int:
    """Parallel slots held now under ``prefix`` (the members of its ``_slots`` sets)."""
    with redis.Redis.from_url(url) as client:
        names = list(client.scan_iter(match=prefix + "*_slots:*", count=1000))
        return sum(int(client.zcard(name)) for name in names)
