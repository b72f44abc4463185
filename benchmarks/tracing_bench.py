"""What tracing costs a gateway request: ``revoctl serve`` (protections on, Redis) with
tracing off, on at ``sample_ratio = 1`` and on at ``sample_ratio = 0``, side by side, each
in front of the same stand-in provider, and the cost of one hook in this process.

The three gateways run at once (`_gateway.revoctl_server`, the same configuration as
``gateway_bench.py``'s protections-on case; tracing set through ``REVOCTL_TRACING__*``),
and take their steady runs in turn, ``--rounds`` times, so all three meet the same moments
of a shared machine. The traced ones export over OTLP/HTTP to a receiver in this process
(``tests/support/otlp_receiver.py``), which decodes every batch as a collector would. Per
case: p50 and p99 from send to last byte, the server's CPU per request (from /proc), and
the ratios to tracing off; then a disabled hook's cost, and an enabled one's (SDK, spans
to an in-memory exporter).

    python benchmarks/tracing_bench.py [--rate 200] [--requests 600] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import sys
import timeit
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _gateway.client import BODY, Run, Target, steady, warm_up
from _gateway.redis_server import bench_redis, keys_under
from _gateway.revoctl_server import revoctl_gateway
from _gateway.servers import standin

from tests.support.otlp_receiver import OtlpReceiver

CASES = {
    "tracing off": {"REVOCTL_TRACING__ENABLED": "false"},
    "tracing on, ratio 1": {"REVOCTL_TRACING__ENABLED": "true"},
    "tracing on, ratio 0": {
        "REVOCTL_TRACING__ENABLED": "true",
        "REVOCTL_TRACING__SAMPLE_RATIO": "0",
    },
}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="steady requests/s")
    parser.add_argument("--requests", type=int, default=600, help="requests a case a round")
    parser.add_argument("--rounds", type=int, default=3, help="steady runs of each case")
    return parser.parse_args()


@contextlib.contextmanager
def environment(values: dict[str, str]):  # type: ignore[no-untyped-def]
    """``os.environ`` with ``values`` while a gateway (and its CLI set-up) starts."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def hook_costs() -> tuple[float, float]:
    """Microseconds of one ``with span(...)`` hook: tracing off, then on (in-memory)."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from revoctl.core import tracing
    from revoctl.core.tracing.settings import TracingConfig

    def hook() -> None:
        with tracing.span("ratelimit.check", rule="rpm"):
            pass

    number = 200_000
    off = min(timeit.repeat(hook, number=number, repeat=5)) / number * 1e6
    exporter = InMemorySpanExporter()
    tracing.configure(TracingConfig(enabled=True), exporter=exporter)
    number = 5_000
    on = min(timeit.repeat(lambda: (hook(), exporter.clear()), number=number, repeat=5))
    tracing.shutdown()
    return off, on / number * 1e6


async def rounds(targets: list[Target], standin_pid: int, args: argparse.Namespace) -> list[Run]:
    for target in targets:
        await warm_up(target)
    merged = [Run() for _ in targets]
    for _ in range(args.rounds):
        for target, total in zip(targets, merged, strict=True):
            await asyncio.sleep(0.3)
            run = await steady(target, standin_pid, BODY, args.rate, args.requests)
            total.latencies += run.latencies
            total.server_cpu += run.server_cpu
            for error, count in run.errors.items():
                total.errors[error] = total.errors.get(error, 0) + count
    return merged


def main() -> None:
    args = arguments()
    prefix = f"revoctl-trbench:{uuid.uuid4().hex[:8]}:"
    load = os.getloadavg()
    print(
        f"tracing benchmark: {os.cpu_count()} CPUs, load {load[0]:.2f}; revoctl serve, protections"
        f" on (Redis); {args.rounds} x {args.requests} requests at {args.rate:g}/s a case",
        flush=True,
    )
    with (
        OtlpReceiver() as receiver,
        standin(0.0) as (url, standin_pid),
        bench_redis() as (redis_url, _),
        contextlib.ExitStack() as stack,
    ):
        targets = []
        for name, values in CASES.items():
            values = {**values, "REVOCTL_TRACING__ENDPOINT": receiver.endpoint}
            with environment(values):
                gateway = stack.enter_context(
                    revoctl_gateway(
                        url, redis_url, protections=True, prefix=f"{prefix}{len(targets)}:",
                        workers=1, python=sys.executable,
                    )
                )  # fmt: skip
            targets.append(dataclasses.replace(gateway.target, name=name))
        runs = asyncio.run(rounds(targets, standin_pid, args))
        for n in range(len(targets)):
            keys_under(redis_url, f"{prefix}{n}:", delete=True)
        stack.close()  # each gateway stopped: its last batch exported
        spans = receiver.received()
    base = runs[0]
    print(f"\n{'case':<22}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}{'p50 x':>8}{'CPU x':>8}")
    for target, run in zip(targets, runs, strict=True):
        p50, p99 = run.cut(50), run.cut(99)
        cpu = run.per_request_us(run.server_cpu)
        print(
            f"{target.name:<22}{p50:>9.2f}{p99:>9.2f}{cpu:>12.0f}"
            f"{p50 / base.cut(50):>8.2f}{cpu / base.per_request_us(base.server_cpu):>8.2f}"
            + (f"  errors {run.errors}" if run.errors else "")
        )
    servers = [s for s in spans if s.name.startswith("POST ")]
    print(
        f"\nspans received over OTLP/HTTP: {len(spans)}; {len(servers)} requests (warm-ups"
        f" included; ratio 1 answered {runs[1].served} timed ones, ratio 0 keeps none), the"
        " rest the CLI's set-up and the background work"
    )
    off, on = hook_costs()
    print(f"one hook in this process: {off:.3f} us off, {on:.1f} us on (SDK, in-memory)")


if __name__ == "__main__":
    main()
