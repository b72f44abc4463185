"""``revoctl config``: the effective configuration and where each value came from."""

from __future__ import annotations

import typer

from revoctl.cli._app import AppState
from revoctl.cli._console import OutputFormat, OutputOption

app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)


@app.command()
def show(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """Print every setting with its source: default, file, profile, env or flag."""
    from revoctl._dotted import indexed_rows
    from revoctl.config import describe_config

    state = AppState.of(ctx)
    described = describe_config(state.loaded)
    if output is OutputFormat.table:
        for label in ("config_file", "profile", "home"):
            state.console.line(f"{label}: {described[label] or '-'}")
        state.console.line("")
        rows = [
            {**entry, "key": key, "value": value}
            for entry in described["settings"]
            for key, value in indexed_rows(entry["key"], entry["value"])
        ]
        state.console.emit(rows, output, ["key", "value", "source", "origin"])
    else:
        state.console.emit(described, output)
