"""``revoctl secrets rotate --due``: apply ``[secrets.rotation]`` once, for a cron job or a CI
schedule (`revoctl.core.rotation.rotate_due`). Exits 1 when a rotation failed or another
process holds the rotation lease, so a scheduler notices."""

from __future__ import annotations

import typer

from revoctl.cli._app import AppState, call
from revoctl.cli._console import OutputFormat

COLUMNS = ["name", "version", "age_days", "max_age", "outcome", "new_version", "reason"]


def rotate_due(ctx: typer.Context, *, dry_run: bool, output: OutputFormat) -> None:
    """Rotate (or with ``dry_run`` list) every secret past its rule's ``max_age``."""
    from revoctl.core.rotation import rotate_due as apply

    state = AppState.of(ctx)
    config = state.loaded.settings.secrets.rotation
    if not config.rules:
        state.console.info("no [secrets.rotation] rules: nothing is ever due")
    report = call(ctx, lambda svc: apply(svc.secrets, svc.db, config, dry_run=dry_run))
    if output is OutputFormat.table:
        rows = [{column: row.get(column, "") for column in COLUMNS} for row in report["secrets"]]
        state.console.emit(rows, output, COLUMNS, empty="no secret is due for rotation")
    else:
        state.console.emit(report, output)
    if report["failed"]:
        raise typer.Exit(1)
