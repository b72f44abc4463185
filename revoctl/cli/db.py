"""``revoctl db``: connectivity, health, the pool as the server sees it, and migrations."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from revoctl.cli._app import AppState, call, run
from revoctl.cli._console import OutputFormat, OutputOption, cell_text
from revoctl.core.errors import CheckFailedError

app = typer.Typer(
    help="Check the database, inspect its connections and run migrations.", no_args_is_help=True
)


@app.command()
def ping(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """Connect and run SELECT 1; exit 4 when the database cannot be reached."""
    from revoctl._probe_cache import remember

    state = AppState.of(ctx)
    remember(state.sources, os.environ, state.settings)  # the next ping skips Typer and pydantic
    result = call(ctx, lambda svc: svc.db.ping())
    AppState.of(ctx).console.emit(result, output)


@app.command()
def health(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """Reachability, pool saturation and pending migrations; exit 1 when unhealthy."""
    report = call(ctx, lambda svc: svc.db.health_check())
    AppState.of(ctx).console.emit(report, output)
    if report["status"] == "unhealthy":
        raise CheckFailedError(f"database is unhealthy: {report.get('error', 'see the report')}")


@app.command()
def pool(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """The configured pool, the live connections by application, and each runtime instance.

    On PostgreSQL the connections are the server's view, so the runtime's pools show
    from any host; on SQLite (no server) they come from each runtime instance's own
    report. Instances that stopped reporting are flagged stale; those whose rules or
    breakers differ from the others' are listed under config_drift.
    """
    report = call(ctx, lambda svc: svc.db.pool_report())
    console = AppState.of(ctx).console
    if output is not OutputFormat.table:
        console.emit(report, output)
        return
    configured = ", ".join(
        f"{key}={cell_text(value)}" for key, value in report["configured"].items()
    )
    console.line(f"configured: {configured}")
    if not report["server_view"]:
        console.line("SQLite has no server-side view: connections as each instance reports them")
    if report["connections"]:
        console.emit(
            report["connections"],
            output,
            ["application_name", "state", "count", "longest_state_seconds", "stale"],
        )
    else:
        console.line("no open connections")
    if report["instances"]:
        console.line("")
        rows = [
            {
                "instance": i["instance"],
                "seconds_since_report": i["seconds_since_report"],
                "stale": i["stale"],
                "checked_out": (i["pool"] or {}).get("checked_out"),
                "idle": (i["pool"] or {}).get("checked_in"),
                "config_differs": i["config_differs"],
            }
            for i in report["instances"]
        ]
        console.emit(rows, output)
    if report["config_drift"]:
        console.line(
            "configuration drift: rules or breakers differ on " + ", ".join(report["config_drift"])
        )


@app.command()
def prune(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Delete rows older than this in every table, e.g. 90d, 12h, 1w2d "
            "(default: each table's [retention] days).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count the rows that would go; delete none.")
    ] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Delete old rows from the log tables in batches; exit 1 when another process is pruning."""
    from revoctl.cli._durations import parse_duration
    from revoctl.core.db import prune as prune_tables

    state = AppState.of(ctx)
    age = parse_duration(older_than) if older_than is not None else None
    retention = state.settings.retention
    result = call(ctx, lambda svc: prune_tables(svc.db, retention, older_than=age, dry_run=dry_run))
    if output is OutputFormat.table:
        verb = "would delete" if dry_run else "deleted"
        rows = [{"table": table, verb: count} for table, count in result.items()]
        state.console.emit(rows, output, ["table", verb])
        return
    state.console.emit(result, output)


@app.command()
def migrate(
    ctx: typer.Context,
    revision: Annotated[
        str, typer.Option("--revision", "-r", help="Target revision (default: the newest).")
    ] = "head",
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the SQL instead of running it (offline mode).")
    ] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Apply the migrations shipped with revoctl, up to --revision."""
    from revoctl.core.db import DatabaseManager, upgrade

    state = AppState.of(ctx)
    if sql:
        # Offline: nothing connects, so the manager is never opened.
        offline = DatabaseManager(state.settings.database)
        result = run(upgrade(offline, revision, sql=True))
        if output is OutputFormat.table:
            state.console.line(result["sql"].rstrip("\n"))
            return
    else:
        result = call(ctx, lambda svc: upgrade(svc.db, revision))
        if not result["applied"]:
            state.console.info(f"nothing to do: the database is already at {result['to']}")
    state.console.emit(result, output)


@app.command()
def current(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """The applied revision, the newest shipped one and how many are pending."""
    from revoctl.core.db import current as current_revision

    AppState.of(ctx).console.emit(call(ctx, lambda svc: current_revision(svc.db)), output)


@app.command()
def history(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """Every shipped revision, newest first, and whether it is applied."""
    from revoctl.core.db import history as revision_history

    AppState.of(ctx).console.emit(
        call(ctx, lambda svc: revision_history(svc.db)),
        output,
        ["revision", "down_revision", "head", "current", "applied", "description"],
    )


@app.command(context_settings={"ignore_unknown_options": True})  # so that "-1" is a revision
def downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision: an id, -1, or base.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Revert migrations down to REVISION."""
    from revoctl.core.db import downgrade as downgrade_to

    AppState.of(ctx).console.emit(call(ctx, lambda svc: downgrade_to(svc.db, revision)), output)
