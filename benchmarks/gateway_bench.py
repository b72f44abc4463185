"""The LLM gateway's cost: ``revoctl serve`` with every protection on, with them off, two
bare relays and LiteLLM's proxy, each in front of the same stand-in provider, next to
calling the stand-in directly, in one run.

Every server runs in a process of its own (the stand-in ``tests.support.llm_standin``, the
gateway ``revoctl serve --workers N``, LiteLLM's ``litellm --config``); this process is the
load generator: a small HTTP/1.1 keep-alive client on raw asyncio streams (a pool of
connections, 30-60 us of CPU per request, so most of the 2 cores stays with the servers
under test; httpx, as the relays below show, costs over 1 ms). Cases:

* ``direct``: the stand-in itself, the floor;
* ``revoctl, protections on``: auth by gateway key (``revoctl keys create``), a request rule
  and a token rule on the Redis store (charged before the call, refunded after it), the
  provider behind the ``openai_api`` breaker (Redis store), its key read through the secret
  store, usage rows batched to SQLite in a temporary ``REVOCTL_HOME``;
* ``revoctl, protections off``: no rules, no breaker on the provider, ``auth = "none"``
  (usage rows are still written: they are not a protection);
* anchors (``_passthrough.py``): one bare Starlette route under uvicorn, as ``revoctl serve``
  runs it, relaying to the stand-in with ``aiohttp`` (revoctl's provider client, same pool
  limits) and with ``httpx`` (which revoctl used until this benchmark showed its cost): what
  a gateway on this stack costs before any work of its own, and what the HTTP client costs;
* ``LiteLLM``: ``litellm[proxy]`` pinned (``--litellm-version``), installed on first use into
  a venv of its own (``--litellm-venv``; never the project's), a ``model_list`` pointing at
  the stand-in (``openai/...`` with ``api_base``), no database, a master key (this release
  refuses to start without one), its price map read locally.

Phases of each case, non-streaming unless said:

* steady: ``--rate`` requests/s (default 200), open loop (each request leaves at its time,
  answered or not; how late the scheduler sent it is recorded), ``--requests`` of them:
  requests/s, p50/p90/p99 from send to last byte, the **added** latency (this case's
  percentile minus the direct call's), and the server's CPU per request (from /proc);
* streamed: the same with ``stream: true`` and usage, ``--stream-requests`` of them;
* capacity: ``--concurrency`` connections in a closed loop for ``--seconds``, the best of
  ``--capacity-runs``: requests/s and the CPU per request of the server, the stand-in and
  this generator. On 2 shared cores the generator, the gateway and the stand-in compete,
  so CPU per request is the steadier measure of cost.

Then the gateway's own ``x-revoctl-overhead-ms`` header (its time minus the provider's, none
of the generator's noise; uvicorn's parsing and sending are outside it) and LiteLLM's
``x-litellm-overhead-duration-ms``; where a request's CPU goes (differences of the cases);
the goals (protections cost under 10% of throughput; added p50 <= 1 ms and p99 <= 5 ms at
200 requests/s; ours under LiteLLM's); the checks (a usage row for every request
answered, no Redis key left); the machine's load average (also per phase).

    python benchmarks/gateway_bench.py [--rate 200] [--requests 1600] [--seconds 1.5]
        [--concurrency 16] [--workers 1] [--upstream-delay 0] [--no-anchors]
        [--no-litellm] [--gateway-python PYTHON] [--profile]

``--upstream-delay S``: the stand-in holds each answer S seconds, as an LLM does, so the
gateway holds rate x S calls in flight. ``--gateway-python``: run revoctl with another
interpreter (e.g. a venv with ``uvicorn[standard]``) to measure a change of stack.
``--profile``: the protections-on gateway once more under cProfile (``_profiled_serve.py``)
at ``--profile-rate`` for ``--profile-seconds``, and where its time goes.

Redis: ``REVOCTL_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/14``), keys under a
prefix of this run's own, deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import os
import pstats
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
REDIS_URL = os.environ.get("REVOCTL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
LITELLM_VERSION = "1.106.12"
PROVIDER_KEY = "sk-bench-" + "x" * 24
LITELLM_MASTER_KEY = "sk-litellm-bench-" + "0" * 32
MODEL = "gpt-4o-mini"
CHAT = "/v1/chat/completions"
BODY = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "say something"}],
    "max_tokens": 64,
}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}


# ---------------------------------------------------------------------- the load generator


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
    target: Target, standin_pid: int, body: dict[str, object], seconds: float, concurrency: int
) -> Run:
    """``concurrency`` connections, each sending its next request when answered."""
    run, pool, request = Run(), Pool(target.port), target.request(body)
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
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


# ---------------------------------------------------------------------- processes


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(port: int, path: str, process: subprocess.Popen[bytes], seconds: float) -> None:
    """Poll ``GET path`` until it answers 200; raise with the log's tail if it never does."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    deadline = time.monotonic() + seconds

    async def probe() -> int:
        connection = await HttpConnection.open(port)
        try:
            status, _, _ = await asyncio.wait_for(connection.exchange(request), 2)
            return status
        finally:
            connection.close()

    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with status {process.returncode} before answering")
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
            if asyncio.run(probe()) == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"did not answer GET {path} within {seconds:.0f} s")


def stop(process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    """SIGTERM (a graceful stop: the gateway flushes its usage rows), SIGKILL if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def log_tail(path: Path, lines: int = 8) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


STANDIN_WITH_DELAY = """
import signal, sys, threading
from tests.support.llm_standin import LLMStandIn
standin = LLMStandIn(api_key=sys.argv[1])
standin.delay = float(sys.argv[2])
done = threading.Event()
for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda *_: done.set())
with standin:
    print(standin.url, flush=True)
    done.wait()
"""


@contextlib.contextmanager
def standin(delay: float) -> Iterator[tuple[str, int]]:
    """The stand-in in its own process (``delay``: each answer held that long); its URL
    and pid."""
    argv = [sys.executable, "-m", "tests.support.llm_standin", "--api-key", PROVIDER_KEY]
    if delay:
        argv = [sys.executable, "-c", STANDIN_WITH_DELAY, PROVIDER_KEY, str(delay)]
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        yield url, process.pid
    finally:
        stop(process, 10)


# ---------------------------------------------------------------------- revoctl


def gateway_config(url: str, *, protections: bool, prefix: str) -> str:
    provider = f'[providers.standin]\nkind = "openai"\nbase_url = "{url}/v1"\n'
    provider += 'api_key = "${secret:standin-api-key}"\n'
    model = f'[models."{MODEL}"]\nprovider = "standin"\n'
    model += "input_cost_per_1k = 0.00015\noutput_cost_per_1k = 0.0006\n"
    if not protections:
        return (
            '[gateway]\nauth = "none"\n\n[limits]\nstore = "memory"\n\n'
            '[breakers]\nstore = "memory"\n\n' + provider + "\n" + model
        )
    return f"""[gateway]
auth = "keys"
request_rule = "bench_requests"
token_rule = "bench_tokens"

[redis]
url = "{REDIS_URL}"

[limits]
store = "redis"
key_prefix = "{prefix}rl:"

[[limits.rules]]
name = "bench_requests"
requests = 10000000
window_seconds = 60
algorithm = "token_bucket"
scope = "per_api_key"
burst_multiplier = 1.0

[[limits.rules]]
name = "bench_tokens"
requests = 1000000000
window_seconds = 60
algorithm = "sliding_window"
scope = "per_api_key"

[breakers]
store = "redis"
key_prefix = "{prefix}cb:"

{provider}breaker = "openai_api"

{model}"""


@dataclass
class Gateway:
    target: Target
    process: subprocess.Popen[bytes]
    home: Path


@contextlib.contextmanager
def revoctl_gateway(
    url: str,
    *,
    protections: bool,
    prefix: str,
    workers: int,
    python: str,
    serve: list[str] | None = None,
) -> Iterator[Gateway]:
    """``revoctl serve`` (or ``serve``, another launcher of the same app) on a state
    directory of its own; the schema, the provider's secret and the gateway key made with
    the CLI first, as an operator would."""
    home = Path(tempfile.mkdtemp(prefix="revoctl-gwbench-"))
    config = home / "revoctl.toml"
    config.write_text(gateway_config(url, protections=protections, prefix=prefix))
    env = {**os.environ, "REVOCTL_HOME": str(home), "REVOCTL_CONFIG": str(config)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    revoctl = [python, "-m", "revoctl"]

    def cli(*argv: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [*revoctl, *argv], env=env, cwd=home, input=stdin, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"revoctl {' '.join(argv)}: {done.stderr.strip()[-400:]}")
        return done.stdout

    process = None
    try:
        cli("db", "migrate")
        cli("secrets", "set", "standin-api-key", stdin=PROVIDER_KEY)
        headers = {}
        if protections:
            issued = json.loads(cli("-o", "json", "keys", "create", "bench"))
            headers["Authorization"] = f"Bearer {issued['key']}"
        port = free_port()
        argv = [*(serve or [*revoctl, "serve", "--workers", str(workers)]), "--port", str(port)]
        with (home / "serve.log").open("wb") as log:
            process = subprocess.Popen(
                argv, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_until_up(port, "/health/live", process, 60)
        except RuntimeError as exc:
            raise RuntimeError(f"revoctl serve: {exc}\n{log_tail(home / 'serve.log')}") from None
        name = "revoctl, protections on" if protections else "revoctl, protections off"
        target = Target(
            name, port, headers, "x-revoctl-overhead-ms", (process.pid,),
            up_since=time.monotonic(),
        )  # fmt: skip
        yield Gateway(target, process, home)
    finally:
        if process is not None:
            stop(process)
        shutil.rmtree(home, ignore_errors=True)


def usage_rows(home: Path) -> int:
    with contextlib.closing(sqlite3.connect(home / "revoctl.db")) as db:
        count: int = db.execute("SELECT count(*) FROM request_logs").fetchone()[0]
        return count


def redis_unreachable() -> str:
    """Why Redis cannot be used ("" when it can)."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return ""


def redis_keys(prefix: str, *, delete: bool) -> int:
    """How many Redis keys start with ``prefix`` (deleted when ``delete``)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if delete and keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


# ---------------------------------------------------------------------- anchors


@contextlib.contextmanager
def passthrough(url: str, client: str) -> Iterator[Target]:
    """`_passthrough.py`: a bare Starlette route forwarding to the stand-in with ``client``."""
    port = free_port()
    argv = [sys.executable, str(BENCHMARKS / "_passthrough.py"), "--port", str(port)]
    argv += ["--upstream", url + "/v1", "--api-key", PROVIDER_KEY, "--client", client]
    workdir = Path(tempfile.mkdtemp(prefix="passthrough-gwbench-"))
    process = None
    try:
        with (workdir / "log").open("wb") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_up(port, "/health/live", process, 30)
        except RuntimeError as exc:
            raise RuntimeError(f"pass-through: {exc}\n{log_tail(workdir / 'log')}") from None
        name = f"anchor: Starlette + {client} relay"
        yield Target(name, port, {}, None, (process.pid,), streams=False, up_since=time.monotonic())
    finally:
        if process is not None:
            stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------- LiteLLM


def ensure_litellm(venv: Path, version: str) -> Path:
    """``litellm[proxy]==version`` in ``venv`` (created on first use); its ``litellm``.

    :raises RuntimeError: it cannot be installed (pip's reason).
    """
    executable = venv / "bin" / "litellm"
    python = venv / "bin" / "python"
    if executable.exists():
        found = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
        )
        if found.stdout.strip() == version:
            return executable
    print(f"installing litellm[proxy]=={version} into {venv} (once) ...", flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", f"litellm[proxy]=={version}"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            reasons = [
                line
                for line in done.stderr.splitlines()
                if line.startswith("ERROR") and "Ignored the following" not in line
            ]
            raise RuntimeError(f"{' '.join(step[-2:])} failed: {' '.join(reasons)[:400]}")
    return executable


@contextlib.contextmanager
def litellm_proxy(executable: Path, version: str, url: str, workers: int) -> Iterator[Target]:
    """``litellm --config`` in front of the stand-in: one model, no database, a master key."""
    workdir = Path(tempfile.mkdtemp(prefix="litellm-gwbench-"))
    (workdir / "config.yaml").write_text(
        f"""model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{MODEL}
      api_base: {url}/v1
      api_key: {PROVIDER_KEY}
general_settings:
  master_key: {LITELLM_MASTER_KEY}
litellm_settings:
  telemetry: false
"""
    )
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of its price list from the internet
        "LITELLM_TELEMETRY": "False",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "REDIS_HOST", "LITELLM_MASTER_KEY"):
        env.pop(name, None)
    port = free_port()
    argv = [str(executable), "--config", str(workdir / "config.yaml")]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        argv += ["--num_workers", str(workers)]
    process = None
    try:
        with (workdir / "litellm.log").open("wb") as log:
            process = subprocess.Popen(
                argv, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_until_up(port, "/health/liveliness", process, 120)
        except RuntimeError as exc:
            raise RuntimeError(f"litellm: {exc}\n{log_tail(workdir / 'litellm.log')}") from None
        headers = {"Authorization": f"Bearer {LITELLM_MASTER_KEY}"}
        yield Target(
            f"LiteLLM {version} proxy", port, headers, "x-litellm-overhead-duration-ms",
            (process.pid,), up_since=time.monotonic(),
        )  # fmt: skip
    finally:
        if process is not None:
            stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------- cProfile

PARTS = [
    # (label, file suffix, function name): cumulative time of each, per request
    ("the whole route (chat_completions)", "routes/chat.py", "chat_completions"),
    ("  read the body, parse JSON", "runtime/bodies.py", "read_json"),
    ("  auth: gateway key", "runtime/identity.py", "identify"),
    ("  limits: charge before the call (Redis)", "runtime/charging.py", "charge"),
    ("  provider call through the breaker", "breakers/_breaker.py", "call"),
    ("    aiohttp ClientSession request", "aiohttp/client.py", "_request"),
    ("  limits: refund after the response (Redis)", "runtime/charging.py", "settle"),
    ("  record: metrics, usage row queued", "runtime/usage.py", "record"),
    ("  JSONResponse built", "starlette/responses.py", "render"),
    ("response sent (uvicorn h11)", "http/h11_impl.py", "send"),
    ("request parsed (uvicorn h11)", "http/h11_impl.py", "handle_events"),
    ("access log line written", "logging/__init__.py", "callHandlers"),
    ("key ring refresh (every 0.5 s)", "runtime/keys.py", "refresh"),
    ("metrics sync (every 1 s)", "runtime/metrics.py", "sync"),
]


IDLE = "<method 'poll' of 'select.epoll' objects>"


def _package(file: str, function: str) -> str:
    """What a function belongs to: its installed package, its stdlib module, or for a
    built-in, socket I/O or the rest."""
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/revoctl/" in file:
        return "revoctl"
    if file == "~":
        return "socket I/O" if "_socket.socket" in function else "built-ins"
    parts = file.split("/")
    if len(parts) > 1 and parts[-2] in ("asyncio", "logging", "json", "re"):
        return parts[-2]
    return parts[-1]


def profile_summary(stats_file: Path, requests: int, cpu_us: float) -> list[str]:
    """Per request: the busy time, the parts of `PARTS`, and own time by package."""
    stats = pstats.Stats(str(stats_file)).stats  # type: ignore[attr-defined]
    rows = [
        (file.replace("\\", "/"), function, own, cumulative)
        for (file, _, function), (_, _, own, cumulative, _) in stats.items()
    ]
    idle = sum(own for _, function, own, _ in rows if function == IDLE)
    busy = sum(own for *_, own, _ in rows) - idle
    lines = [
        f"cProfile of the protections-on gateway (one worker): {requests} requests;"
        f" busy {busy / requests * 1e6:.0f} us/request under the profiler, CPU"
        f" {cpu_us:.0f} us/request (/proc); the profiler inflates Python-heavy code, so read"
        " the shares",
        f"  {'part':44} {'us/req':>7} {'share':>6}",
    ]
    for label, suffix, function in PARTS:
        cumulative = sum(c for file, f, _, c in rows if f == function and file.endswith(suffix))
        lines.append(f"  {label:44} {cumulative / requests * 1e6:7.0f} {cumulative / busy:6.1%}")
    packages: dict[str, float] = {}
    for file, function, own, _ in rows:
        if function != IDLE:
            packages[_package(file, function)] = packages.get(_package(file, function), 0) + own
    lines.append(
        "  own time by package (SQLAlchemy's greenlets blur the call tree above, not this):"
    )
    for package, own in sorted(packages.items(), key=lambda item: -item[1])[:14]:
        lines.append(f"  {package:44} {own / requests * 1e6:7.0f} {own / busy:6.1%}")
    return lines


def profiled(url: str, prefix: str, standin_pid: int, args: argparse.Namespace) -> list[str]:
    """The protections-on gateway under cProfile at ``--profile-rate`` for a while."""
    workdir = Path(tempfile.mkdtemp(prefix="gwbench-profile-"))
    stats_file = workdir / "gateway.prof"
    launcher = [args.gateway_python, str(BENCHMARKS / "_profiled_serve.py")]
    launcher += ["--stats", str(stats_file)]
    try:
        with revoctl_gateway(
            url, protections=True, prefix=prefix, workers=1, python=args.gateway_python,
            serve=launcher,
        ) as gateway:  # fmt: skip
            asyncio.run(warm_up(gateway.target))
            gateway.process.send_signal(signal.SIGUSR1)  # the profile starts now
            time.sleep(0.2)
            count = int(args.profile_rate * args.profile_seconds)
            run = asyncio.run(steady(gateway.target, standin_pid, BODY, args.profile_rate, count))
            stop(gateway.process)
            return profile_summary(stats_file, run.served, run.per_request_us(run.server_cpu))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------- the run


@dataclass
class Case:
    target: Target
    steady: Run
    stream: Run | None
    capacity: Run
    others: int  # answered besides these runs: the warm-up, the capacity runs not kept

    @property
    def answered(self) -> int:
        """Every request answered, warm-up included."""
        runs = (self.steady, self.stream, self.capacity)
        return self.others + sum(run.served for run in runs if run is not None)


async def measure(target: Target, standin_pid: int, args: argparse.Namespace) -> Case:
    warmed = await warm_up(target)
    await asyncio.sleep(0.5)
    steady_run = await steady(target, standin_pid, BODY, args.rate, args.requests)
    stream_run = None
    if args.stream_requests and target.streams:
        await asyncio.sleep(0.5)
        stream_run = await steady(target, standin_pid, STREAM_BODY, args.rate, args.stream_requests)
    await asyncio.sleep(0.5)
    capacity_runs = []
    for _ in range(args.capacity_runs):  # the best run: a stall of the shared machine or
        await asyncio.sleep(0.3)  # a passing collapse of a pool should not decide it
        capacity_runs.append(
            await closed_loop(target, standin_pid, BODY, args.seconds, args.concurrency)
        )
    capacity_run = max(capacity_runs, key=lambda run: run.rate)
    warmed += sum(run.served for run in capacity_runs) - capacity_run.served
    return Case(target, steady_run, stream_run, capacity_run, warmed)


def latency_table(title: str, cases: list[tuple[Target, Run]], floor: Run) -> list[str]:
    lines = [
        title,
        f"  {'case':36} {'req/s':>6} {'p50':>7} {'p90':>7} {'p99':>7} {'+p50':>7} {'+p99':>7}"
        f" {'late p99':>8} {'errors':>6} {'server us/req':>13} {'load':>5}",
    ]
    for target, run in cases:
        added = ["", ""]
        if run is not floor:
            added = [f"{run.cut(q) - floor.cut(q):7.2f}" for q in (50, 99)]
        server = f"{run.per_request_us(run.server_cpu):13.0f}" if target.pids else f"{'':13}"
        lines.append(
            f"  {target.name:36} {run.rate:6.0f} {run.cut(50):7.2f} {run.cut(90):7.2f}"
            f" {run.cut(99):7.2f} {added[0]:>7} {added[1]:>7} {run.cut(99, run.lateness):8.2f}"
            f" {sum(run.errors.values()):6d} {server} {run.load:5.2f}"
        )
    return lines


def find(cases: list[Case], start: str) -> Case | None:
    return next((case for case in cases if case.target.name.startswith(start)), None)


def report(cases: list[Case], args: argparse.Namespace, notes: list[str]) -> list[str]:
    direct = cases[0]
    out = [""]
    out += latency_table(
        f"steady: {args.rate:g} requests/s asked, {args.requests} non-streaming requests a case;"
        " ms from send to last byte; +p50/+p99: added over the direct call",
        [(case.target, case.steady) for case in cases],
        direct.steady,
    )
    if direct.stream is not None:
        out.append("")
        out += latency_table(
            f"streamed (stream: true, include_usage): {args.rate:g} requests/s asked,"
            f" {args.stream_requests} a case; ms from send to the stream's end",
            [(case.target, case.stream) for case in cases if case.stream is not None],
            direct.stream,
        )
    out += [
        "",
        f"capacity: {args.concurrency} connections in a closed loop, the best of"
        f" {args.capacity_runs} runs of {args.seconds:g} s;"
        " CPU per request from /proc (server: the case's own processes)",
        f"  {'case':36} {'req/s':>6} {'p50':>7} {'p99':>7} {'server us/req':>13}"
        f" {'stand-in us/req':>15} {'generator us/req':>16} {'errors':>6} {'load':>5}",
    ]
    for case in cases:
        run = case.capacity
        server = f"{run.per_request_us(run.server_cpu):13.0f}" if case.target.pids else f"{'':13}"
        out.append(
            f"  {case.target.name:36} {run.rate:6.0f} {run.cut(50):7.2f} {run.cut(99):7.2f}"
            f" {server} {run.per_request_us(run.standin_cpu):15.0f}"
            f" {run.per_request_us(run.client_cpu):16.0f} {sum(run.errors.values()):6d}"
            f" {run.load:5.2f}"
        )
    out += ["", f"the server's own overhead header at {args.rate:g} requests/s (steady phase, ms):"]
    for case in cases:
        samples = case.steady.overheads
        if samples:
            out.append(
                f"  {case.target.name:36} {case.target.overhead_header}:"
                f" p50 {case.steady.cut(50, samples):.3f}  p99 {case.steady.cut(99, samples):.3f}"
            )
    on, off = find(cases, "revoctl, protections on"), find(cases, "revoctl, protections off")
    relay_httpx, relay_aiohttp = (
        find(cases, "anchor: Starlette + httpx"),
        find(cases, "anchor: Starlette + aiohttp"),
    )
    lite = find(cases, "LiteLLM")

    def cpu(case: Case) -> float:
        return case.capacity.per_request_us(case.capacity.server_cpu)

    def steady_cpu(case: Case) -> float:
        return case.steady.per_request_us(case.steady.server_cpu)

    if on and off and relay_httpx and relay_aiohttp:
        rows = [  # revoctl relays with aiohttp; httpx is shown for what it would cost
            ("a bare Starlette route relaying with httpx", relay_httpx, ""),
            (
                "the same relaying with aiohttp (revoctl's client)",
                relay_aiohttp,
                "aiohttp, not httpx",
            ),
            ("revoctl, protections off", off, "revoctl's own work"),
            ("revoctl, protections on", on, "the protections"),
        ]
        out += [
            "",
            "where a request's CPU goes: server us/request, steady phase / capacity phase,"
            " and the difference from the row above",
        ]
        previous: Case | None = None
        for label, case, what in rows:
            line = f"  {label:48} {steady_cpu(case):6.0f} / {cpu(case):6.0f}"
            if previous is not None:
                line += (
                    f"   {steady_cpu(case) - steady_cpu(previous):+6.0f} /"
                    f" {cpu(case) - cpu(previous):+6.0f}  {what}"
                )
            out.append(line)
            previous = case
    out += ["", "goals"]
    if on and off:
        ratio = on.capacity.rate / off.capacity.rate
        own = on.steady.cut(50, on.steady.overheads) - off.steady.cut(50, off.steady.overheads)
        out.append(
            f"  protections' cost: capacity on/off {ratio:.2f}x (goal: at least 0.90x)"
            f" -> {'met' if ratio >= 0.9 else 'NOT met'}; CPU per request on/off,"
            f" steady {steady_cpu(on) / steady_cpu(off):.2f}x, capacity {cpu(on) / cpu(off):.2f}x;"
            f" own time (x-revoctl-overhead-ms) p50 {own:+.2f} ms"
        )
    if on:
        p50 = on.steady.cut(50) - direct.steady.cut(50)
        p99 = on.steady.cut(99) - direct.steady.cut(99)
        out.append(
            f"  added at {args.rate:g} requests/s, protections on: p50 {p50:.2f} ms (goal <= 1)"
            f" -> {'met' if p50 <= 1 else 'NOT met'}; p99 {p99:.2f} ms (goal <= 5)"
            f" -> {'met' if p99 <= 5 else 'NOT met'}"
        )
    if lite:
        lite_p50 = lite.steady.cut(50) - direct.steady.cut(50)
        lite_p99 = lite.steady.cut(99) - direct.steady.cut(99)
        for ours in (on, off):
            if ours is None:
                continue
            p50 = ours.steady.cut(50) - direct.steady.cut(50)
            p99 = ours.steady.cut(99) - direct.steady.cut(99)
            out.append(
                f"  {ours.target.name} / LiteLLM: added p50 {p50:.2f} / {lite_p50:.2f} ms"
                f" ({p50 / lite_p50:.3g}x), added p99 {p99:.2f} / {lite_p99:.2f} ms"
                f" ({p99 / lite_p99:.3g}x), capacity {ours.capacity.rate:.0f} /"
                f" {lite.capacity.rate:.0f} requests/s"
                f" ({ours.capacity.rate / lite.capacity.rate:.2f}x),"
                f" CPU per request {cpu(ours) / cpu(lite):.2f}x"
            )
    out += ["", "checks and notes"]
    out += [f"  {note}" for note in notes]
    on_time = 1.05 * args.requests / args.rate + args.upstream_delay + 0.1
    for case in cases:
        if case.steady.elapsed > on_time:
            out.append(
                f"  {case.target.name} could not keep up with {args.rate:g} requests/s"
                f" ({case.steady.rate:.0f} served): its steady latencies are mostly queueing"
            )
    for case in cases:
        phases: list[tuple[str, Run | None]] = [
            ("steady", case.steady),
            ("streamed", case.stream),
            ("capacity", case.capacity),
        ]
        for phase, measured in phases:
            if measured is not None and measured.errors:
                failed = ", ".join(
                    f"{count} x {kind}" for kind, count in sorted(measured.errors.items())
                )
                out.append(f"  errors, {case.target.name}, {phase}: {failed}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="steady requests/s")
    parser.add_argument("--requests", type=int, default=1600, help="steady requests a case")
    parser.add_argument("--stream-requests", type=int, default=400, help="0: no streamed row")
    parser.add_argument("--seconds", type=float, default=1.5, help="one capacity run")
    parser.add_argument("--capacity-runs", type=int, default=3, help="the best one counts")
    parser.add_argument("--concurrency", type=int, default=16, help="capacity connections")
    parser.add_argument("--workers", type=int, default=1, help="gateway (and LiteLLM) workers")
    parser.add_argument(
        "--upstream-delay", type=float, default=0.0, metavar="SECONDS",
        help="the stand-in holds each answer this long (an LLM's latency)",
    )  # fmt: skip
    parser.add_argument("--no-anchors", action="store_true", help="skip the bare relays")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--litellm-version", default=LITELLM_VERSION)
    parser.add_argument(
        "--litellm-venv", type=Path, default=None,
        help="where LiteLLM is installed (default /tmp/revoctl-bench-litellm-VERSION)",
    )  # fmt: skip
    parser.add_argument(
        "--gateway-python", default=sys.executable, help="the interpreter that runs revoctl"
    )
    parser.add_argument(
        "--profile", action="store_true",
        help="also run the protections-on gateway under cProfile and say where its time goes",
    )  # fmt: skip
    parser.add_argument("--profile-rate", type=float, default=50.0)
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    args = parser.parse_args()
    if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("starlette") is None:
        sys.exit("the gateway needs the runtime extra: pip install -e '.[runtime]'")

    prefix = f"revoctl-gwbench:{uuid.uuid4().hex[:8]}:"
    load = os.getloadavg()
    print(
        f"gateway benchmark: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f}"
        f" {load[2]:.2f} at the start; revoctl serve --workers {args.workers}; the stand-in"
        f" (answers after {args.upstream_delay:g} s), each server and this load generator in"
        " processes of their own",
        flush=True,
    )
    notes: list[str] = []
    cases: list[Case] = []
    profile_lines: list[str] = []
    begun = time.perf_counter()
    with standin(args.upstream_delay) as (url, standin_pid):
        direct = Target("direct (stand-in, the floor)", int(url.rsplit(":", 1)[1]),
                        {"Authorization": f"Bearer {PROVIDER_KEY}"})  # fmt: skip
        cases.append(asyncio.run(measure(direct, standin_pid, args)))
        try:
            redis_error = redis_unreachable()
            if redis_error:
                notes.append(f"protections on: not measured: Redis {REDIS_URL}: {redis_error}")
            for protections in (False,) if redis_error else (True, False):
                with revoctl_gateway(
                    url, protections=protections, prefix=prefix, workers=args.workers,
                    python=args.gateway_python,
                ) as gateway:  # fmt: skip
                    case = asyncio.run(measure(gateway.target, standin_pid, args))
                    stop(gateway.process)  # a graceful stop flushes the usage rows
                    notes.append(
                        f"usage rows, {gateway.target.name}: {usage_rows(gateway.home)}"
                        f" request_logs rows for {case.answered} requests answered"
                    )
                    cases.append(case)
            if args.profile and not redis_error:
                profile_lines = profiled(url, prefix, standin_pid, args)
        finally:
            if not redis_unreachable():
                deleted = redis_keys(prefix, delete=True)
                left = redis_keys(prefix, delete=False)
                notes.append(
                    f"Redis: {deleted} keys under {prefix}* deleted after the run, {left} left"
                )
        if not args.no_anchors:
            for client in ("httpx", "aiohttp"):
                with passthrough(url, client) as target:
                    cases.append(asyncio.run(measure(target, standin_pid, args)))
        if args.no_litellm:
            notes.append("LiteLLM: not measured (--no-litellm)")
        else:
            venv = args.litellm_venv or Path(f"/tmp/revoctl-bench-litellm-{args.litellm_version}")
            try:
                executable = ensure_litellm(venv, args.litellm_version)
                with litellm_proxy(executable, args.litellm_version, url, args.workers) as target:
                    cases.append(asyncio.run(measure(target, standin_pid, args)))
                notes.append(
                    f"LiteLLM: litellm[proxy]=={args.litellm_version} in {venv}, master key, no"
                    " database, LITELLM_LOCAL_MODEL_COST_MAP=True, its default logging"
                )
            except (RuntimeError, OSError) as exc:
                notes.append(f"LiteLLM {args.litellm_version}: not measured: {exc}")
    print("\n".join(report(cases, args, notes)))
    if profile_lines:
        print("\n" + "\n".join(profile_lines))
    load = os.getloadavg()
    print(
        f"\nmachine: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end;"
        f" the whole run took {time.perf_counter() - begun:.0f} s"
    )


if __name__ == "__main__":
    main()
