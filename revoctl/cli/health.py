"""``revoctl health``: every service's status in one report."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from revoctl.cli._app import AppState, call
from revoctl.cli._console import OutputFormat, OutputOption, cell_text
from revoctl.core.errors import CheckFailedError

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
    from revoctl.core.health import at_or_past

    state = AppState.of(ctx)
    report = call(ctx, lambda svc: svc.health_check())
    if output is OutputFormat.table:
        rows = [[name, svc["status"], _detail(svc)] for name, svc in report["services"].items()]
        state.console.table(["service", "status", "detail"], rows)
        state.console.line(f"overall: {report['status']}")
    else:
        state.console.emit(report, output)
    if at_or_past(report["status"], fail_on.value):
        raise CheckFailedError(f"status is {report['status']} (--fail-on {fail_on.value})")


def _detail(service: dict[str, object]) -> str:
    """Why first (the reason it is degraded, the error that made it unhealthy), then figures."""
    why = [str(service[key]) for key in ("reason", "error") if service.get(key)]
    figures = [
        f"{key}={cell_text(value)}"
        for key, value in service.items()
        if key not in ("status", "reason", "error", "last_error")
        and value is not None
        and not isinstance(value, dict)
    ]
    return "; ".join([*why, ", ".join(figures)] if figures else why)
