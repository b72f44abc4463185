"""The LLM gateway's cost: ``revoctl serve`` with every protection on, with them off, two
bare relays and LiteLLM's proxy, each in front of the same stand-in provider, next to
calling the stand-in directly, in one run.

Every server runs in a process of its own (the stand-in ``tests.support.llm_standin``, the
gateway ``revoctl serve --workers N``, LiteLLM's ``litellm --config``, a ``redis-server``
of the run's own); this process is the load generator (`_gateway.client`). Cases:

* ``direct``: the stand-in itself, the floor;
* ``revoctl, protections on`` (`_gateway.revoctl_server`): a key of the tier ``bench``
  (``revoctl keys create bench --tier bench``), whose request rule and token rule, budget
  and parallel cap are all on the Redis store (one reservation before the call, one
  settlement after it), the provider behind the ``openai_api`` breaker (Redis store), its
  key read through the secret store, usage rows batched to SQLite in a temporary
  ``REVOCTL_HOME``; the budget and the cap are set so that they never deny;
* ``revoctl, routing on``: protections on, and the model as two weighted deployments of the
  same stand-in routed ``least_busy`` (skipped with ``--no-routing``);
* ``revoctl, protections off``: no rules, no breaker on the provider, ``auth = "none"``
  (usage rows are still written: they are not a protection);
* anchors (``_passthrough.py``): one bare Starlette route under uvicorn, as ``revoctl serve``
  runs it, relaying to the stand-in with ``aiohttp`` (revoctl's provider client, same pool
  limits) and with ``httpx``: what a gateway on this stack costs before any work of its own;
* ``LiteLLM`` (`_gateway.litellm`): ``litellm[proxy]`` pinned, in a venv of its own, with
  router-level ``rpm``/``tpm`` limits counted in the run's Redis (its keys and budgets need a
  database engine it downloads at run time: not here).

Phases of each case, non-streaming unless said (`_gateway.cases`):

* steady: ``--rate`` requests/s (default 200), open loop, ``--requests`` of them:
  requests/s, p50/p90/p99 from send to last byte, the **added** latency (this case's
  percentile minus the direct call's), and the server's CPU per request (from /proc);
* streamed: the same with ``stream: true`` and usage, ``--stream-requests`` of them;
* capacity: ``--concurrency`` connections in a closed loop for ``--seconds``, the best of
  ``--capacity-runs``; protections on and off take their runs in turn (on, off, on, off,
  ...), both gateways up, so their ratio meets the same moments of a shared machine.

Then the Redis round trips a request costs, counted under ``MONITOR`` in a short run of
its own (``--round-trip-requests``), by command, and those sent in the background; the
gateway's own ``x-revoctl-overhead-ms`` header and LiteLLM's; where a request's CPU goes;
the goals with pass or fail (capacity on/off at least 0.9x; added p50 <= 1 ms and p99 <= 5
ms at 200 requests/s, protections on; two round trips a request; beside LiteLLM); the
checks (a usage row for every request answered, every parallel slot released, the key's
spend, no Redis key left); the machine's load average (also per phase) (`_gateway.report`).

    python benchmarks/gateway_bench.py [--rate 200] [--requests 1600] [--seconds 1.5]
        [--concurrency 16] [--workers 1] [--upstream-delay 0] [--no-anchors]
        [--no-litellm] [--gateway-python PYTHON] [--profile [--profile-stats FILE]]

``--upstream-delay S``: the stand-in holds each answer S seconds, as an LLM does, so the
gateway holds rate x S calls in flight. ``--gateway-python``: run revoctl with another
interpreter (e.g. a venv with another stack) to measure a change of stack. ``--profile``:
the protections-on gateway once more under cProfile (``_profiled_serve.py``) at
``--profile-rate`` for ``--profile-seconds``, and where its time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _gateway.cases import Case, capacities, latencies, measure
from _gateway.client import Target
from _gateway.litellm import LITELLM_VERSION, ensure_litellm, litellm_proxy
from _gateway.profiling import profiled
from _gateway.redis_floor import Floor, redis_floor
from _gateway.redis_server import CommandCount, bench_redis, keys_under
from _gateway.report import report
from _gateway.revoctl_server import (
    RoundTrips,
    checks,
    count_round_trips,
    revoctl_gateway,
    usage_rows,
)
from _gateway.servers import PROVIDER_KEY, passthrough, standin, stop


def arguments() -> argparse.Namespace:
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
    parser.add_argument(
        "--round-trip-requests", type=int, default=400,
        help="requests of the Redis round-trip count (a multiple of 4; 0: no count)",
    )  # fmt: skip
    parser.add_argument(
        "--floor-calls", type=int, default=3000,
        help="requests of the Redis floor (two round trips in this process; 0: none)",
    )  # fmt: skip
    parser.add_argument("--no-anchors", action="store_true", help="skip the bare relays")
    parser.add_argument("--no-routing", action="store_true", help="skip the routing-on case")
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
    parser.add_argument("--profile-stats", type=Path, default=None, help="keep cProfile's file")
    return parser.parse_args()


def revoctl_cases(
    url: str, redis_url: str, prefix: str, standin_pid: int, args: argparse.Namespace
) -> tuple[list[Case], list[str]]:
    """Protections on and off (and routing on), every gateway up: each one's latency phases,
    then their capacity runs in turn; the checks of each."""
    notes: list[str] = []
    settings = {"prefix": prefix, "workers": args.workers, "python": args.gateway_python}
    with contextlib.ExitStack() as stack:
        on = stack.enter_context(revoctl_gateway(url, redis_url, protections=True, **settings))
        off = stack.enter_context(revoctl_gateway(url, redis_url, protections=False, **settings))
        gateways = [on, off]
        if not args.no_routing:
            gateways.append(
                stack.enter_context(
                    revoctl_gateway(url, redis_url, protections=True, routing=True, **settings)
                )
            )
        cases = [asyncio.run(latencies(gw.target, standin_pid, args)) for gw in gateways]
        time.sleep(0.5)
        asyncio.run(capacities(cases, standin_pid, args))
        notes += checks(on, redis_url, prefix, cases[0].answered)
        for gateway, case in zip(gateways, cases, strict=True):
            stop(gateway.process)  # a graceful stop flushes the usage rows
            notes.append(
                f"usage rows, {gateway.target.name}: {usage_rows(gateway.home)}"
                f" request_logs rows for {case.answered} requests answered"
            )
    return cases, notes


def litellm_case(
    url: str, redis_url: str, standin_pid: int, args: argparse.Namespace
) -> tuple[Case | None, list[str]]:
    """LiteLLM with its router's rpm/tpm on the run's Redis, its Redis commands counted."""
    venv = args.litellm_venv or Path(f"/tmp/revoctl-bench-litellm-{args.litellm_version}")
    try:
        executable = ensure_litellm(venv, args.litellm_version)
        with litellm_proxy(
            executable, args.litellm_version, url, args.workers, redis_url
        ) as target:
            count = CommandCount(redis_url)
            count.start()
            case = asyncio.run(measure(target, standin_pid, args))
            count.finish()
    except (RuntimeError, OSError) as exc:
        return None, [f"LiteLLM {args.litellm_version}: not measured: {exc}"]
    return case, [
        f"LiteLLM: litellm[proxy]=={args.litellm_version} in {venv}, master key, no database,"
        " LITELLM_LOCAL_MODEL_COST_MAP=True, its default logging; deployment rpm/tpm with"
        " usage-based-routing-v2 on the run's Redis (increments written in batches)",
        f"LiteLLM's Redis commands: {count.total / case.answered:.3f} per request answered"
        f" ({count.describe() or 'none'}; INFO commandstats over the whole case)",
    ]


def main() -> None:
    args = arguments()
    if importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("starlette") is None:
        sys.exit("the gateway needs the runtime extra: pip install -e '.[runtime]'")

    prefix = f"revoctl-gwbench:{uuid.uuid4().hex[:8]}:"
    load = os.getloadavg()
    print(
        f"gateway benchmark: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f}"
        f" {load[2]:.2f} at the start; revoctl serve --workers {args.workers}; the stand-in"
        f" (answers after {args.upstream_delay:g} s), each server, a Redis of the run's own"
        " and this load generator in processes of their own",
        flush=True,
    )
    notes: list[str] = []
    cases: list[Case] = []
    profile_lines: list[str] = []
    trips: RoundTrips | None = None
    floors: list[Floor] = []
    begun = time.perf_counter()
    with (
        standin(args.upstream_delay) as (url, standin_pid),
        bench_redis() as (redis_url, redis_pid),
    ):
        direct = Target("direct (stand-in, the floor)", int(url.rsplit(":", 1)[1]),
                        {"Authorization": f"Bearer {PROVIDER_KEY}"})  # fmt: skip
        cases.append(asyncio.run(measure(direct, standin_pid, args)))
        try:
            ours, checked = revoctl_cases(url, redis_url, prefix, standin_pid, args)
            cases += ours
            notes += checked
            if args.floor_calls:
                floors = redis_floor(redis_url, redis_pid, prefix, args.floor_calls)
            if args.round_trip_requests:
                with tempfile.TemporaryDirectory(prefix="gwbench-monitor-") as workdir:
                    trips = count_round_trips(
                        url, redis_url, prefix, args.gateway_python, Path(workdir),
                        args.round_trip_requests,
                    )  # fmt: skip
            if args.profile:
                profile_lines = profiled(url, redis_url, prefix, standin_pid, args)
        finally:
            deleted = keys_under(redis_url, prefix, delete=True)
            left = keys_under(redis_url, prefix, delete=False)
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
            lite, said = litellm_case(url, redis_url, standin_pid, args)
            cases += [lite] if lite is not None else []
            notes += said
    print("\n".join(report(cases, args, notes, trips, floors)))
    if trips is not None:
        print("\n" + "\n".join(trips.lines()))
    if profile_lines:
        print("\n" + "\n".join(profile_lines))
    load = os.getloadavg()
    print(
        f"\nmachine: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end;"
        f" the whole run took {time.perf_counter() - begun:.0f} s"
    )


if __name__ == "__main__":
    main()
