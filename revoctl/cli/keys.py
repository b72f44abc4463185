"""``revoctl keys``: gateway keys, created once, listed without the key, revoked fleet-wide;
their tiers, budgets, spend and rotation. Each command is one `revoctl.core.accounts` call
(the admin API makes the same ones)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from revoctl.cli._app import AppState, call
from revoctl.cli._console import OutputFormat, OutputOption

app = typer.Typer(
    help="Create, list, rotate and revoke the keys callers present to the gateway; "
    "their tiers and budgets.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="Key name: who holds it, e.g. team-search.")]
LIST_COLUMNS = ["name", "tier", "created_at", "expires_at", "revoked", "spend", "budget",
                "budget_resets_at"]  # fmt: skip
SPEND_COLUMNS = ["name", "tier", "spend", "budget", "period_start", "resets_at"]


def _actor() -> str:
    from revoctl.core.actors import default_actor

    return default_actor()


@app.command("create")
def create(
    ctx: typer.Context,
    name: NameArgument,
    tier: Annotated[
        str | None,
        typer.Option("--tier", metavar="TIER", help="A [tiers.NAME]: its rules, budget, models."),
    ] = None,
    expires_in: Annotated[
        int | None,
        typer.Option("--expires-in", metavar="SECONDS", help="Expire the key after this long."),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a key and print it, once: only its hash is stored.

    Examples:
      $ revoctl keys create team-search --tier standard --expires-in 2592000 -o json
    """
    actor = _actor()
    issued = call(
        ctx,
        lambda svc: svc.accounts.create(name, tier=tier, expires_in=expires_in, actor=actor),
    )
    _show_issued(ctx, issued, output, "created")


@app.command("list")
def list_(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """List the keys: names, tiers, dates and spend, never a key."""
    entries = call(ctx, lambda svc: svc.accounts.list_keys())
    AppState.of(ctx).console.emit(entries, output, LIST_COLUMNS, empty="no gateway keys")


@app.command("spend")
def spend(
    ctx: typer.Context, name: NameArgument, output: OutputOption = OutputFormat.table
) -> None:
    """A key's spend in its current budget period, its budget and when the period resets."""
    document = call(ctx, lambda svc: svc.accounts.spend(name))
    AppState.of(ctx).console.emit(document, output, SPEND_COLUMNS)


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    name: NameArgument,
    overlap: Annotated[
        float,
        typer.Option(
            "--overlap", metavar="SECONDS", help="How long the old key keeps working (0: none)."
        ),
    ] = 0,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Give a key a new value and print it, once; same name, tier and spend.

    Examples:
      $ revoctl keys rotate team-search --overlap 3600
    """
    actor = _actor()
    issued = call(ctx, lambda svc: svc.accounts.rotate(name, overlap_seconds=overlap, actor=actor))
    _show_issued(ctx, issued, output, "rotated")


@app.command("update")
def update(
    ctx: typer.Context,
    name: NameArgument,
    tier: Annotated[
        str, typer.Option("--tier", metavar="TIER", help="The key's new [tiers.NAME].")
    ],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Move a key to another tier."""
    actor = _actor()
    entry = call(ctx, lambda svc: svc.accounts.update(name, tier=tier, actor=actor))
    AppState.of(ctx).console.emit(entry, output, LIST_COLUMNS)


@app.command("budget")
def budget(
    ctx: typer.Context,
    name: NameArgument,
    add: Annotated[
        float,
        typer.Option("--add", metavar="AMOUNT", help="Raise this period's budget by AMOUNT."),
    ],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Top up a key's budget for its current period (the next period starts afresh)."""
    actor = _actor()
    document = call(ctx, lambda svc: svc.accounts.add_budget(name, add, actor=actor))
    AppState.of(ctx).console.emit(document, output, SPEND_COLUMNS)


@app.command("revoke")
def revoke(
    ctx: typer.Context, name: NameArgument, output: OutputOption = OutputFormat.table
) -> None:
    """Revoke a key: every gateway instance refuses it within a second."""
    actor = _actor()
    document = call(ctx, lambda svc: svc.accounts.revoke(name, actor=actor))
    AppState.of(ctx).console.emit(document, output)


def _show_issued(
    ctx: typer.Context, issued: dict[str, Any], output: OutputFormat, done: str
) -> None:
    """A new key: alone on stdout as a table (for ``$(...)``), or the JSON document."""
    console = AppState.of(ctx).console
    if output is OutputFormat.table:
        console.line(issued["key"])
        console.info(f"key {issued['name']!r} {done}: store it now, it is not shown again")
        return
    console.emit(issued, output)
