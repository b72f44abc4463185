"""``revoctl breakers``: the fleet's circuit breakers; trip, reset and their history.

With store ``sql`` or ``redis`` a trip or reset reaches every process on the store
within its ``poll_interval`` (Redis pushes it at once); with ``memory`` it reaches
only this command's own process, which is said on stderr. The core is imported
inside each command, so ``revoctl --help`` imports no back end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from revoctl.cli._app import AppState, call
from revoctl.cli._complete import BreakerArgument, breaker_names
from revoctl.cli._console import Console, OutputFormat, OutputOption, Table
from revoctl.core.errors import UsageError

if TYPE_CHECKING:
    from revoctl.core.services import Services

app = typer.Typer(
    help="Show the circuit breakers across the fleet; trip, reset, and their history.",
    no_args_is_help=True,
)

STATUS_COLUMNS = [
    "name",
    "state",
    "failure_count",
    "success_count",
    "opened_at",
    "forced",
    "reason",
    "processes",
]
FLEET_COLUMNS = [
    "breaker",
    "process",
    "state",
    "calls",
    "failures",
    "slow_calls",
    "rejections",
    "reported_at",
    "stale",
]
HISTORY_COLUMNS = ["at", "from", "to", "cause", "actor", "process", "scope"]


@app.command()
def status(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(help="One breaker (default: all).", autocompletion=breaker_names),
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="A live table, refreshed until Ctrl-C.")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, max=3600, help="Seconds between refreshes.")
    ] = 1.0,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Each breaker's state across the fleet, each process's statistics, the control plane."""
    console = AppState.of(ctx).console
    if not watch:
        items = call(ctx, lambda svc: svc.breakers.status(name))
        if output is not OutputFormat.table:
            _warn_if_not_ready(console, items)
            console.emit(items, output)
            return
        console.emit(_rows(items), output, STATUS_COLUMNS)
        _show_fleet_and_plane(console, items)
        return
    if output is not OutputFormat.table:
        raise UsageError("--watch draws a live table: use it without -o json/yaml")

    async def watch_status(svc: Services) -> None:
        import asyncio

        with console.live() as show:
            while True:
                show(_views(await svc.breakers.status(name)))
                await asyncio.sleep(interval)

    try:
        call(ctx, watch_status)
    except KeyboardInterrupt:  # Ctrl-C ends the watch: that is how it is meant to stop
        return


ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="Why: shown by status and history.")
]
ForOption = Annotated[
    float | None,
    typer.Option("--for", metavar="SECONDS", min=0.001, help="Reset by itself after this long."),
]


@app.command()
def trip(
    ctx: typer.Context,
    name: BreakerArgument,
    reason: ReasonOption = None,
    for_seconds: ForOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Force a breaker open in every process, until reset or for --for SECONDS."""
    state = AppState.of(ctx)
    item = call(ctx, lambda svc: svc.breakers.trip(name, reason=reason, for_seconds=for_seconds))
    _warn_if_memory(state)
    state.console.emit(_brief(item), output)


@app.command()
def reset(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="The breaker to reset.", autocompletion=breaker_names)
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Reset every breaker.")] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Close a breaker (or --all) in every process: counters and any trip cleared."""
    if (name is None) == (not all_):
        raise UsageError("give a breaker NAME or --all, not both and not neither")
    state = AppState.of(ctx)
    items = call(ctx, lambda svc: svc.breakers.reset(name))
    _warn_if_memory(state)
    if name is not None:
        state.console.emit(_brief(items[0]), output)
    elif output is OutputFormat.table:
        state.console.emit(_rows(items), output, STATUS_COLUMNS)
    else:
        state.console.emit([_brief(item) for item in items], output)


@app.command()
def history(
    ctx: typer.Context,
    name: BreakerArgument,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="At most this many.")
    ] = 50,
    output: OutputOption = OutputFormat.table,
) -> None:
    """A breaker's state transitions, newest first, with their causes."""
    found = call(ctx, lambda svc: svc.breakers.history(name, limit=limit))
    AppState.of(ctx).console.emit(
        found, output, HISTORY_COLUMNS, empty=f"no transitions recorded for {name}"
    )


def _brief(item: dict[str, Any]) -> dict[str, Any]:
    """A breaker's status without the per-process list (trip and reset print this)."""
    return {key: value for key, value in item.items() if key != "fleet"}


def _rows(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**item, "processes": _processes(item)} for item in items]


def _processes(item: dict[str, Any]) -> str:
    stale = sum(1 for entry in item["fleet"] if entry["stale"])
    text = f"{item['processes']} reporting"
    if item["open_processes"]:
        text += f", {item['open_processes']} open"
    if stale:
        text += f", {stale} stale"
    return text


def _fleet_rows(items: Sequence[dict[str, Any]]) -> list[list[Any]]:
    return [
        [item["name"], *(entry.get(column) for column in FLEET_COLUMNS[1:])]
        for item in items
        for entry in item["fleet"]
    ]


def _plane(items: Sequence[dict[str, Any]]) -> str:
    plane = items[0]["control_plane"] if items else {}
    text = f"control plane: {plane.get('store', '-')}: {plane.get('status', '-')}"
    return text + (f" ({plane['error']})" if plane.get("error") else "")


def _views(items: Sequence[dict[str, Any]]) -> list[Table]:
    """What ``--watch`` redraws: the breakers, the fleet, the control plane."""
    rows = [[row.get(column) for column in STATUS_COLUMNS] for row in _rows(items)]
    views: list[Table] = [(_plane(items), STATUS_COLUMNS, rows)]
    fleet = _fleet_rows(items)
    if fleet:
        views.append(("fleet", FLEET_COLUMNS, fleet))
    return views


def _show_fleet_and_plane(console: Console, items: Sequence[dict[str, Any]]) -> None:
    fleet = _fleet_rows(items)
    if fleet:
        console.line("")
        console.table(FLEET_COLUMNS, fleet)
    console.line("")
    console.line(_plane(items))


def _warn_if_memory(state: AppState) -> None:
    from revoctl.core.breakers import StoreKind

    if state.settings.breakers.store is StoreKind.MEMORY:
        state.console.warn(
            "[breakers] store is memory: this reached only this command's own process; "
            "use store sql or redis to reach the fleet"
        )


def _warn_if_not_ready(console: Console, items: Sequence[dict[str, Any]]) -> None:
    plane = items[0]["control_plane"] if items else {}
    if plane.get("status") != "ok":
        console.warn(f"control plane {plane.get('status')}: {plane.get('error')}")
