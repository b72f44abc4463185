"""``revoctl health``: every service's status in one report."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from revoctl.cli._app import AppState, call
from revoctl.cli._console import OutputFormat, OutputOption
from revoctl.cli._fast import show_health

app = typer.Typer(add_completion=False)


class FailOn(StrEnum):
    degraded = "degraded"
    unhealthy = "unhealthy"


@app.command()
def health(
    ctx: typer.Context,
    output: OutputOption = OutputFormat.table,
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Exit 1 when the status is this bad or worse.")
    ] = FailOn.unhealthy,
) -> None:
    """Check every service; exit 1 when the status reaches --fail-on."""
    state = AppState.of(ctx)
    report = call(ctx, lambda svc: svc.health_check())
    show_health(state.console, report, output, fail_on.value)
