"""For ``--profile``: the protections-on gateway under cProfile (``_profiled_serve.py``),
and where its time goes per request: the parts of the request path (`PARTS`) and own time
by package."""

from __future__ import annotations

import argparse
import asyncio
import pstats
import shutil
import signal
import tempfile
import time
from pathlib import Path

from .client import BODY, steady, warm_up
from .revoctl_server import revoctl_gateway
from .servers import BENCHMARKS, stop

PARTS = [
    # (label, file suffix, function name): cumulative time of each, per request
    ("the whole route (chat_completions)", "routes/chat.py", "chat_completions"),
    ("  read the body, parse JSON", "runtime/bodies.py", "read_json"),
    ("  auth: gateway key", "runtime/identity.py", "identify"),
    ("  limits: charge before the call (Redis)", "runtime/charging.py", "charge"),
    ("    the reservation's EVALSHA", "stores/redis.py", "reserve"),
    ("  provider call through the breaker", "breakers/_breaker.py", "call"),
    ("    aiohttp ClientSession request", "aiohttp/client.py", "_request"),
    ("  limits: settle after the response (Redis)", "runtime/charging.py", "settle"),
    ("    the settlement's EVALSHA", "stores/redis.py", "settle"),
    ("  record: metrics, usage row queued", "runtime/usage.py", "record"),
    ("  JSONResponse built", "starlette/responses.py", "render"),
    ("response sent (uvicorn httptools)", "http/httptools_impl.py", "send"),
    ("request parsed (uvicorn httptools)", "http/httptools_impl.py", "data_received"),
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


def profiled(
    url: str, redis_url: str, prefix: str, standin_pid: int, args: argparse.Namespace
) -> list[str]:
    """The protections-on gateway under cProfile at ``--profile-rate`` for a while; the
    statistics kept in ``--profile-stats`` when given."""
    workdir = Path(tempfile.mkdtemp(prefix="gwbench-profile-"))
    stats_file = workdir / "gateway.prof"
    launcher = [args.gateway_python, str(BENCHMARKS / "_profiled_serve.py")]
    launcher += ["--stats", str(stats_file)]
    try:
        with revoctl_gateway(
            url, redis_url, protections=True, prefix=prefix, workers=1,
            python=args.gateway_python,
            serve=launcher,
        ) as gateway:  # fmt: skip
            asyncio.run(warm_up(gateway.target))
            gateway.process.send_signal(signal.SIGUSR1)  # the profile starts now
            time.sleep(0.2)
            count = int(args.profile_rate * args.profile_seconds)
            run = asyncio.run(steady(gateway.target, standin_pid, BODY, args.profile_rate, count))
            stop(gateway.process)
            if args.profile_stats:
                shutil.copy(stats_file, args.profile_stats)
            return profile_summary(stats_file, run.served, run.per_request_us(run.server_cpu))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
