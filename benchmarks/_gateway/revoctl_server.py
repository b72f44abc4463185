"""``revoctl serve`` as a benchmark case: its configuration, its start with the CLI's
set-up (schema, the provider's secret, the gateway key), and what is checked after it.

Protections on: the key is of the tier ``bench``, whose request rule and token rule are on
the Redis store, with a budget and a parallel cap, and the provider sits behind the
``openai_api`` breaker (Redis store); the budget is far above what the run spends and the
cap above any concurrency it uses, so nothing is denied and every request pays the whole
charge: one reservation (one EVALSHA) before the provider call, one settlement after it.
Protections off: no rules, no breaker, ``auth = "none"`` (usage rows are still written:
they are not a protection). Routing on: protections on, and the model as two weighted
deployments of the same stand-in routed ``least_busy`` (calls in flight counted per
deployment, shared through the Redis store in the background every second).

`count_round_trips` counts, in a short run of its own under ``MONITOR``, the Redis
commands a request costs, by name, and those the gateway sends in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .client import BODY, MODEL, Target, closed_loop, warm_up
from .redis_server import Monitor, slots_held
from .servers import PROVIDER_KEY, free_port, log_tail, stop, wait_until_up

TIER = "bench"
BUDGET = 1_000_000.0
"""The tier's budget per period: far above what a run spends (a few units per million
requests at the stand-in's usage and these prices), so it never denies."""
SETTLE_SECONDS = 0.5
"""How long the round-trip count waits after its last answer for the last settlements."""
MAX_PARALLEL = 1000
"""The tier's parallel cap: above any ``--concurrency`` used, so it never denies."""


ROUTED = (
    'routing = "least_busy"\ndeployments = [\n'
    '  { provider = "standin", upstream = "%s", weight = 2, name = "first" },\n'
    '  { provider = "standin", upstream = "%s", weight = 1, name = "second" },\n]\n'
)
"""The model as two deployments of the same stand-in (``routing``)."""


def gateway_config(
    url: str, redis_url: str, *, protections: bool, prefix: str, routing: bool = False
) -> str:
    provider = f'[providers.standin]\nkind = "openai"\nbase_url = "{url}/v1"\n'
    provider += 'api_key = "${secret:standin-api-key}"\n'
    model = f'[models."{MODEL}"]\n'
    model += ROUTED % (MODEL, MODEL) if routing else 'provider = "standin"\n'
    model += "input_cost_per_1k = 0.00015\noutput_cost_per_1k = 0.0006\n"
    if not protections:
        return (
            '[gateway]\nauth = "none"\n\n[limits]\nstore = "memory"\n\n'
            '[breakers]\nstore = "memory"\n\n' + provider + "\n" + model
        )
    return f"""[gateway]
auth = "keys"

[tiers.{TIER}]
request_rule = "bench_requests"
token_rule = "bench_tokens"
budget = {BUDGET}
budget_period = "30d"
max_parallel_requests = {MAX_PARALLEL}
models = ["{MODEL}"]

[redis]
url = "{redis_url}"

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
    cli: Callable[..., str]


@contextlib.contextmanager
def revoctl_gateway(
    url: str,
    redis_url: str,
    *,
    protections: bool,
    prefix: str,
    workers: int,
    python: str,
    serve: list[str] | None = None,
    routing: bool = False,
) -> Iterator[Gateway]:
    """``revoctl serve`` (or ``serve``, another launcher of the same app) on a state
    directory of its own; the schema, the provider's secret and the gateway key (of the
    tier ``bench``) made with the CLI first, as an operator would; ``routing``: the model
    as two deployments routed ``least_busy`` (with the protections on)."""
    home = Path(tempfile.mkdtemp(prefix="revoctl-gwbench-"))
    config = home / "revoctl.toml"
    config.write_text(
        gateway_config(url, redis_url, protections=protections, prefix=prefix, routing=routing)
    )
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
            issued = json.loads(cli("-o", "json", "keys", "create", "bench", "--tier", TIER))
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
        name = "revoctl, routing on" if routing else name
        target = Target(
            name, port, headers, "x-revoctl-overhead-ms", (process.pid,),
            up_since=time.monotonic(),
        )  # fmt: skip
        yield Gateway(target, process, home, cli)
    finally:
        if process is not None:
            stop(process)
        shutil.rmtree(home, ignore_errors=True)


def usage_rows(home: Path) -> int:
    with contextlib.closing(sqlite3.connect(home / "revoctl.db")) as db:
        count: int = db.execute("SELECT count(*) FROM request_logs").fetchone()[0]
        return count


def slots_after(redis_url: str, prefix: str, seconds: float = 3.0) -> int:
    """The parallel slots still held once the last settlements have run (polled for up to
    ``seconds``: a request's settlement runs just after its response is sent)."""
    deadline = time.monotonic() + seconds
    while (held := slots_held(redis_url, prefix)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return held


def checks(gateway: Gateway, redis_url: str, prefix: str, answered: int) -> list[str]:
    """After a protections-on case (the gateway still up): slots held, the key's spend."""
    spend = json.loads(gateway.cli("-o", "json", "keys", "spend", "bench"))
    return [
        f"parallel slots held after the run, {gateway.target.name}:"
        f" {slots_after(redis_url, prefix)} (every one released: 0)",
        f"budget of the key, {gateway.target.name}: spend {spend['spend']:.6g} of"
        f" {spend['budget']:g} for {answered} requests answered",
    ]


@dataclass
class RoundTrips:
    """The commands of a window of ``requests`` requests (``busy``) and of as long a window
    without any (``idle``: the gateway's background work, e.g. the breakers' sync); a
    request's own are the difference."""

    requests: int
    busy: Counter[str]
    idle: Counter[str]
    seconds: float

    @staticmethod
    def sent(window: Counter[str]) -> Counter[str]:
        """The commands clients sent (not those the scripts ran)."""
        return Counter({k: n for k, n in window.items() if k.startswith("client ")})

    def own(self) -> Counter[str]:
        """The commands the requests sent: the busy window's less the idle one's."""
        return self.sent(self.busy) - self.sent(self.idle)

    def evalsha(self) -> float:
        return self.own()["client EVALSHA"] / self.requests

    def commands(self) -> float:
        return sum(self.own().values()) / self.requests

    def lines(self) -> list[str]:
        sent, in_scripts = self.sent(self.busy), self.busy - self.sent(self.busy)
        return [
            f"Redis round trips (MONITOR on the benchmark's own Redis, {self.requests}"
            f" requests on 4 connections in {self.seconds:.1f} s, protections on, one worker):",
            f"  per request, the background's taken out: EVALSHA {self.evalsha():.3f}, every"
            f" command {self.commands():.3f} ({_named(self.own(), self.requests)})",
            f"  the whole window: {sum(sent.values())} commands ({_named(sent, 1)});"
            f" inside the scripts {sum(in_scripts.values()) / self.requests:.2f} a request",
            f"  as long a window without requests: {sum(self.sent(self.idle).values())}"
            f" commands ({_named(self.sent(self.idle), 1)})",
        ]


def _named(counted: Counter[str], per: int) -> str:
    return (
        ", ".join(f"{name.split(' ', 1)[1]} {n / per:.3g}" for name, n in counted.most_common())
        or "none"
    )


def count_round_trips(
    url: str, redis_url: str, prefix: str, python: str, workdir: Path, requests: int = 400
) -> RoundTrips:
    """A protections-on gateway of its own: ``requests`` requests on 4 connections under
    ``MONITOR``, then as long a window without any."""
    with revoctl_gateway(
        url, redis_url, protections=True, prefix=prefix, workers=1, python=python
    ) as gateway:
        asyncio.run(warm_up(gateway.target))
        time.sleep(0.5)
        with Monitor(redis_url, workdir / "monitor.log") as monitor:
            monitor.mark("busy")
            started = time.perf_counter()
            asyncio.run(_send(gateway.target, requests))
            time.sleep(SETTLE_SECONDS)  # the last settlements, sent after their responses
            seconds = time.perf_counter() - started
            monitor.mark("idle")
            time.sleep(seconds)
            monitor.mark("end")
        windows = monitor.windows()
        return RoundTrips(requests, windows["busy"], windows["idle"], seconds)


async def _send(target: Target, requests: int, connections: int = 4) -> None:
    """Exactly ``requests`` requests on ``connections`` connections."""
    per = requests // connections
    run = await closed_loop(target, 0, BODY, 0.0, connections, per_connection=per)
    if run.errors or run.served != requests:
        raise RuntimeError(f"round-trip run: {run.served} answered, errors {run.errors}")
