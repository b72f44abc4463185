"""The load generator: a small HTTP/1.1 keep-alive client on raw asyncio streams.

A pool of connections, 30-60 us of CPU per request, so most of the 2 cores stays with the
servers under test (httpx, as the relays show, costs over 1 ms). Two ways to send:
`steady` (open loop: each request leaves at its time, answered or not, and how late the
scheduler sent it is recorded) and `closed_loop` (N connections, each sending its next
request when answered: capacity). `Meter` reads the wall time and the CPU seconds of the
servers (from /proc), of the stand-in and of this process across one phase.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

MODEL = "gpt-4o-mini"
CHAT = "/v1/chat/completions"
BODY = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "say something"}],
    "max_tokens": 64,
}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}


class HttpConnection:
    """One keep-alive HTTP/1.1 connection: a request out, the whole response in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reusable = True

    @classmethod
    async def open(cls, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send ``request``; the status, the headers (lower-case names) and the body."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while await self.reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                        pass
                    break
                parts.append((await self.reader.readexactly(size + 2))[:-2])
            body = b"".join(parts)
        else:  # read to the end: the server closes
            body = await self.reader.read()
            self.reusable = False
        if headers.get("connection", "").lower() == "close":
            self.reusable = False
        return status, headers, body

    def close(self) -> None:
        self.writer.close()


@dataclass(frozen=True)
class Target:
    """Where a case sends its requests, and what it sends."""

    name: str
    port: int
    headers: dict[str, str]
    overhead_header: str | None = None
    pids: tuple[int, ...] = ()  # the server's processes, for their CPU time
    streams: bool = True  # False: an anchor that relays no stream
    up_since: float = 0.0  # time.monotonic() when the server first answered

    def request(self, body: dict[str, object]) -> bytes:
        payload = json.dumps(body).encode()
        head = [
            f"POST {CHAT} HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


@dataclass
class Run:
    """What one phase measured."""

    latencies: list[float] = field(default_factory=list)  # ms, send to last byte
    lateness: list[float] = field(default_factory=list)  # ms the scheduler sent late
    overheads: list[float] = field(default_factory=list)  # ms, the server's own header
    errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    server_cpu: float = 0.0  # seconds, the case's server processes
    standin_cpu: float = 0.0
    client_cpu: float = 0.0  # seconds, this process
    load: float = 0.0  # 1-minute load average at the end
    first_answer: float = math.inf  # time.perf_counter() of the first and the last answer
    last_answer: float = 0.0

    @property
    def served(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        """Answers per second, over the span from the first answer to the last (so an
        upstream's fixed delay does not count against a server that keeps up)."""
        span = self.last_answer - self.first_answer
        return (self.served - 1) / span if self.served > 1 and span > 0 else 0.0

    def cut(self, q: int, samples: list[float] | None = None) -> float:
        """The ``q``-th percentile of ``samples`` (the latencies by default)."""
        data = self.latencies if samples is None else samples
        if len(data) < 2:
            return data[0] if data else float("nan")
        return statistics.quantiles(data, n=100, method="inclusive")[q - 1]

    def per_request_us(self, seconds: float) -> float:
        return seconds / self.served * 1e6 if self.served else float("nan")


IDLE_SECONDS = 2.0
"""A pooled connection idle longer than this is closed, not reused: uvicorn closes its
idle connections after 5 s, and a request sent as it does so would fail."""


class Pool:
    """Idle connections to one server, the last released first; a request takes one or
    opens a new one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[HttpConnection, float]] = []

    async def _connection(self) -> HttpConnection:
        while self.idle:
            connection, since = self.idle.pop()
            if time.monotonic() - since < IDLE_SECONDS and not connection.reader.at_eof():
                return connection
            connection.close()
        return await HttpConnection.open(self.port)

    async def send(self, request: bytes, run: Run, overhead_header: str | None) -> None:
        connection = await self._connection()
        start = time.perf_counter()
        try:
            status, headers, _ = await connection.exchange(request)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            connection.close()
            kind = type(exc).__name__
            run.errors[kind] = run.errors.get(kind, 0) + 1
            return
        now = time.perf_counter()
        run.latencies.append((now - start) * 1000)
        run.first_answer = min(run.first_answer, now)
        run.last_answer = now
        if status != 200:
            run.errors[str(status)] = run.errors.get(str(status), 0) + 1
        if overhead_header and overhead_header in headers:
            run.overheads.append(float(headers[overhead_header]))
        if connection.reusable:
            self.idle.append((connection, time.monotonic()))
        else:
            connection.close()

    def close(self) -> None:
        for connection, _ in self.idle:
            connection.close()
        self.idle.clear()


class Meter:
    """Wall time, and the CPU seconds of the servers and of this process, across one phase."""

    def __init__(self, target: Target, standin_pid: int) -> None:
        self.target = target
        self.standin_pid = standin_pid
        self.server = tree_cpu(target.pids)
        self.standin = tree_cpu((standin_pid,))
        self.client = time.process_time()
        self.start = time.perf_counter()

    def settle(self, run: Run) -> None:
        run.elapsed = time.perf_counter() - self.start
        run.client_cpu = time.process_time() - self.client
        run.server_cpu = tree_cpu(self.target.pids) - self.server
        run.standin_cpu = tree_cpu((self.standin_pid,)) - self.standin
        run.load = os.getloadavg()[0]


async def steady(
    target: Target, standin_pid: int, body: dict[str, object], rate: float, count: int
) -> Run:
    """``count`` requests at ``rate`` per second, open loop."""
    run, pool, request = Run(), Pool(target.port), target.request(body)
    loop = asyncio.get_running_loop()
    tasks = []
    meter = Meter(target, standin_pid)
    start = loop.time()
    for n in range(count):
        due = start + n / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        run.lateness.append(max(0.0, loop.time() - due) * 1000)
        tasks.append(asyncio.create_task(pool.send(request, run, target.overhead_header)))
    await asyncio.gather(*tasks)
    meter.settle(run)
    pool.close()
    return run


async def closed_loop(
    target: Target,
    standin_pid: int,
    body: dict[str, object],
    seconds: float,
    concurrency: int,
    *,
    per_connection: int = 0,
) -> Run:
    """``concurrency`` connections, each sending its next request when answered, for
    ``seconds`` (or ``per_connection`` requests each, when given)."""
    run, pool, request = Run(), Pool(target.port), target.request(body)
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        if per_connection:
            for _ in range(per_connection):
                await pool.send(request, run, target.overhead_header)
            return
        while time.perf_counter() < deadline:
            await pool.send(request, run, target.overhead_header)

    meter = Meter(target, standin_pid)
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    meter.settle(run)
    pool.close()
    return run


SETTLED_SECONDS = 6.0
"""Measuring starts no sooner after a server came up: revoctl's first instance report (5 s
after start-up) stalls its event loop once, for a few hundred ms, while it first imports and
compiles what the report needs; that is start-up, not a request's cost."""


async def warm_up(target: Target, rounds: int = 40, concurrency: int = 4) -> int:
    """Untimed requests, streamed and not (connections opened, caches and lazy imports
    filled), then a trickle until the server has run `SETTLED_SECONDS`; how many were
    answered."""
    scratch = Run()
    pool = Pool(target.port)
    for body in (BODY, STREAM_BODY) if target.streams else (BODY,):
        request = target.request(body)

        async def caller(request: bytes = request) -> None:
            for _ in range(rounds):
                await pool.send(request, scratch, None)

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    request = target.request(BODY)
    while time.monotonic() < target.up_since + SETTLED_SECONDS:
        await pool.send(request, scratch, None)
        await asyncio.sleep(0.05)
    pool.close()
    if scratch.errors:
        raise RuntimeError(f"{target.name}: warm-up requests failed: {scratch.errors}")
    return scratch.served


def tree_cpu(pids: tuple[int, ...]) -> float:
    """User + system CPU seconds of ``pids`` and all their descendants alive now."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        stats[pid] = fields
        children.setdefault(int(fields[1]), []).append(pid)
    total, todo, seen = 0, list(pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += int(stats[pid][11]) + int(stats[pid][12])
        todo.extend(children.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")
