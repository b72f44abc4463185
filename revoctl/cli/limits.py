"""``revoctl limits``: see, test and reset the very buckets the runtime fills; simulate a rule.

These commands talk to the configured store directly: an unreachable store is exit 4
(``failure_mode`` is the runtime's policy, not the operator's view). ``simulate``
needs no store at all. The core is imported inside each command, so ``revoctl
--help`` imports no back end.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from revoctl.cli._app import AppState, call
from revoctl.cli._complete import RuleArgument
from revoctl.cli._console import OutputFormat, OutputOption
from revoctl.core.errors import CheckFailedError, NotFoundError, UsageError

if TYPE_CHECKING:
    from revoctl.core.limits.settings import RateLimitRule

app = typer.Typer(
    help="See, test, reset and simulate the rate limits of [[limits.rules]].",
    no_args_is_help=True,
)

KeyOption = Annotated[
    str | None,
    typer.Option("--key", "-k", help="The key (user, IP, API key name); '*' when not given."),
]

RULE_COLUMNS = [
    "name",
    "requests",
    "window_seconds",
    "algorithm",
    "scope",
    "burst_multiplier",
    "limit",
    "enabled",
]


@app.command("rules")
def rules(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """List the configured rules; `limit` is what one key can use at once."""
    state = AppState.of(ctx)
    records = [
        {
            "name": rule.name,
            "requests": rule.requests,
            "window_seconds": rule.window_seconds,
            "algorithm": rule.algorithm.value,
            "scope": rule.scope.value,
            "burst_multiplier": rule.burst_multiplier,
            "limit": rule.capacity,
            "enabled": rule.enabled,
        }
        for rule in state.settings.limits.rules
    ]
    state.console.emit(
        records,
        output,
        RULE_COLUMNS,
        empty="no rules configured: add [[limits.rules]] tables to the config",
    )


@app.command("test")
def test(
    ctx: typer.Context,
    rule: RuleArgument,
    key: KeyOption = None,
    count: Annotated[
        int, typer.Option("--count", "-n", min=1, max=100_000, help="Checks to make, in a row.")
    ] = 1,
    weight: Annotated[
        int, typer.Option("--weight", "-w", min=1, help="Units each check consumes.")
    ] = 1,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Make consuming checks against the store; exit 1 when the last one was denied."""
    state = AppState.of(ctx)
    _known(state, rule)
    run = call(ctx, lambda svc: svc.limiter.run_checks(rule, key, count, weight))
    document = {
        "rule": run.rule,
        "key": run.key,
        "checks": run.checks,
        "allowed": run.allowed,
        "denied": run.denied,
        "last": run.last.as_dict(),
    }
    state.console.emit(document, output)
    if not run.last.allowed:
        wait = run.last.retry_after
        when = f"retry after {wait:.3f}s" if wait is not None else run.last.reason
        raise CheckFailedError(f"denied by {run.rule} for key {run.key!r}: {when}")


@app.command("inspect")
def inspect(
    ctx: typer.Context,
    rule: RuleArgument,
    key: KeyOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show a key's state, or every key the store tracks for the rule; consumes nothing."""
    state = AppState.of(ctx)
    _known(state, rule)
    found = call(ctx, lambda svc: svc.limiter.inspect(rule, key))
    records = [asdict(seen) for seen in found]
    columns = ["rule", "key", "algorithm", "limit", "remaining", "reset_after"]
    if key is not None:
        state.console.emit(records[0], output, columns)
        return
    state.console.emit(
        records, output, columns, empty=f"no key holds state under {rule}: every key is full"
    )


@app.command("reset")
def reset(
    ctx: typer.Context,
    rule: RuleArgument,
    key: Annotated[str | None, typer.Option("--key", "-k", help="The key to reset.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Reset every key of the rule.")] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Forget a key's counters (or every key's, with --all): back to full."""
    state = AppState.of(ctx)
    if (key is None) == (not all_):
        raise UsageError("give exactly one of --key KEY and --all")
    _known(state, rule)
    removed = call(ctx, lambda svc: svc.limiter.reset(rule, None if all_ else key))
    state.console.emit({"rule": rule, "key": None if all_ else key, "reset": removed}, output)


@app.command("simulate")
def simulate(
    ctx: typer.Context,
    rule: RuleArgument,
    rate: Annotated[float, typer.Option("--rate", "-r", help="Requests per second offered.")],
    duration: Annotated[float, typer.Option("--duration", "-d", help="Seconds of traffic.")],
    burst: Annotated[
        int,
        typer.Option("--burst", "-b", min=1, help="Requests arriving at once (same average rate)."),
    ] = 1,
    step: Annotated[
        float | None, typer.Option("--step", help="Seconds per point of the series.")
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Replay synthetic traffic against a rule in memory, instantly, and chart what passes."""
    from revoctl.core.limits import simulate as replay

    state = AppState.of(ctx)
    result = replay(_known(state, rule), rate, duration, burst=burst, step=step)
    if output is not OutputFormat.table:
        state.console.emit(result.as_dict(), output)
        return
    times = [point["t"] for point in result.series]
    state.console.chart(
        f"{rule}: {rate:g}/s for {result.duration:g}s (burst {burst}), per {result.step:g}s",
        times,
        {
            "allowed": [point["allowed"] for point in result.series],
            "denied": [point["denied"] for point in result.series],
        },
        "seconds",
    )
    total = result.allowed + result.denied
    share = result.allowed / total if total else 0.0
    state.console.info(
        f"{result.allowed} allowed, {result.denied} denied of {total} ({share:.1%} allowed)"
    )


def _known(state: AppState, rule: str) -> RateLimitRule:
    """The configured rule, before any store is touched (exit 3 when there is none)."""
    found = state.settings.limits.rule(rule)
    if found is None:
        known = ", ".join(r.name for r in state.settings.limits.rules) or "none configured"
        raise NotFoundError(f"no rate-limit rule named {rule!r} (rules: {known})")
    return found
