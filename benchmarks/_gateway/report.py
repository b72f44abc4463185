"""The report: latency and capacity tables, where a request's CPU goes, the goals with
pass or fail, the checks and notes."""

from __future__ import annotations

import argparse

from .cases import Case
from .client import Run, Target
from .redis_floor import Floor
from .revoctl_server import RoundTrips


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


def report(
    cases: list[Case],
    args: argparse.Namespace,
    notes: list[str],
    trips: RoundTrips | None,
    floors: list[Floor],
) -> list[str]:
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
    routed = find(cases, "revoctl, routing on")
    if on and routed:
        ratio = routed.capacity.rate / on.capacity.rate
        p50 = routed.steady.cut(50) - on.steady.cut(50)
        out.append(
            f"  routing's cost (2 deployments, least_busy): capacity routing on / protections"
            f" on {ratio:.2f}x (goal: no worse, within noise: at least 0.95x)"
            f" -> {'met' if ratio >= 0.95 else 'NOT met'}; p50 {p50:+.2f} ms; CPU per request"
            f" {cpu(routed) / cpu(on):.2f}x"
        )
    if off and floors:
        out.append(
            f"  the floor under the protections (this process, {args.floor_calls} requests on"
            " 16 tasks; CPU us per request, client + redis-server), and the best on/off a"
            f" gateway whose other work cost nothing could reach, off costing {cpu(off):.0f} us:"
        )
        for floor in floors:
            out.append(
                f"    {floor.label:40} {floor.client_us:5.0f} + {floor.redis_us:4.0f} us"
                f" -> at most {cpu(off) / (cpu(off) + floor.client_us):.2f}x"
                f" ({cpu(off) / (cpu(off) + floor.total_us):.2f}x with Redis's CPU)"
            )
    if on:
        p50 = on.steady.cut(50) - direct.steady.cut(50)
        p99 = on.steady.cut(99) - direct.steady.cut(99)
        out.append(
            f"  added at {args.rate:g} requests/s, protections on: p50 {p50:.2f} ms (goal <= 1)"
            f" -> {'met' if p50 <= 1 else 'NOT met'}; p99 {p99:.2f} ms (goal <= 5)"
            f" -> {'met' if p99 <= 5 else 'NOT met'}"
        )
    if trips is not None:
        evalsha, commands = trips.evalsha(), trips.commands()
        met = round(evalsha, 2) == 2 and commands < 2.05
        out.append(
            f"  Redis round trips per request, protections on: EVALSHA {evalsha:.3f}, every"
            f" command {commands:.3f} (goal: one before the call and one after, 2)"
            f" -> {'met' if met else 'NOT met'}"
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
