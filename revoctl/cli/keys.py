"""``revoctl keys``: gateway keys, created once, listed without the key, revoked fleet-wide."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from revoctl.cli._app import AppState, call
from revoctl.cli._console import OutputFormat, OutputOption

if TYPE_CHECKING:
    from revoctl.core.keys import KeyRecord

app = typer.Typer(
    help="Create, list and revoke the keys callers present to the gateway.", no_args_is_help=True
)

NameArgument = Annotated[str, typer.Argument(help="Key name: who holds it, e.g. team-search.")]


@app.command("create")
def create(
    ctx: typer.Context,
    name: NameArgument,
    expires_in: Annotated[
        int | None,
        typer.Option("--expires-in", metavar="SECONDS", help="Expire the key after this long."),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a key and print it, once: only its hash is stored.

    Examples:
      $ revoctl keys create team-search --expires-in 2592000 -o json
    """
    from revoctl.core.actors import default_actor

    state = AppState.of(ctx)
    issued = call(
        ctx, lambda svc: svc.keys.create(name, expires_in=expires_in, actor=default_actor())
    )
    document = {"name": issued.name, "key": issued.key, "expires_at": _time(issued.expires_at)}
    if output is OutputFormat.table:
        state.console.line(issued.key)
        state.console.info(f"key {issued.name!r} created: store it now, it is not shown again")
        return
    state.console.emit(document, output)


@app.command("list")
def list_(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """List the keys: names and dates, never a key."""
    records = call(ctx, lambda svc: svc.keys.list_keys())
    AppState.of(ctx).console.emit(
        [_listed(record) for record in records],
        output,
        ["name", "created_at", "expires_at", "revoked"],
    )


@app.command("revoke")
def revoke(
    ctx: typer.Context, name: NameArgument, output: OutputOption = OutputFormat.table
) -> None:
    """Revoke a key: every gateway instance refuses it within a second."""
    record = call(ctx, lambda svc: svc.keys.revoke(name))
    AppState.of(ctx).console.emit(
        {"name": record.name, "revoked": True, "revoked_at": _time(record.revoked_at)}, output
    )


def _listed(record: KeyRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "created_at": _time(record.created_at),
        "expires_at": _time(record.expires_at),
        "revoked": record.revoked_at is not None,
    }


def _time(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None
