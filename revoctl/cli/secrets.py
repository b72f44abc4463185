"""``revoctl secrets``: read, write, rotate and list secrets (Key Vault or the local store).

Values are read from stdin, a hidden prompt or a file, never from an argument
(arguments end up in shell history and ``ps``). Only ``get`` and ``rotate --show``
print a value. The core is imported inside each command, so ``revoctl --help``
imports no back end.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from revoctl.cli._app import AppState, call
from revoctl.cli._console import OutputFormat, OutputOption
from revoctl.cli._durations import parse_duration
from revoctl.core.errors import UsageError

if TYPE_CHECKING:
    from revoctl.core.secrets import SecretProperties

app = typer.Typer(
    help="Read, write, rotate and list secrets (Azure Key Vault or the local store).",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="Secret name: 1-127 letters, digits, dashes.")]


@app.command("get")
def get(
    ctx: typer.Context,
    name: NameArgument,
    version: Annotated[
        str | None, typer.Option("--version", help="A version id (default: the latest).")
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Print a secret's value alone, for $(...); -o json/yaml add its version and dates."""
    state = AppState.of(ctx)
    secret = call(ctx, lambda svc: svc.secrets.read_secret(name, version))
    if output is OutputFormat.table:
        state.console.line(secret.value)
        return
    document = {
        "name": secret.name,
        "value": secret.value,
        "version": secret.version,
        "updated_on": _timestamp(secret.updated_on),
        "enabled": secret.enabled,
        "provider": secret.provider.value,
    }
    state.console.emit(document, output)


@app.command("list")
def list_(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="DURATION",
            help="Only secrets unchanged for this long (due for rotation), e.g. 90d, 12h, 30m.",
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List secrets with their latest version and date; never their values."""
    state = AppState.of(ctx)
    age = parse_duration(older_than) if older_than is not None else None
    found = call(ctx, lambda svc: svc.secrets.list_secrets(older_than=age))
    rows = [{"name": props.name, **_version_record(props)} for props in found]
    state.console.emit(rows, output, ["name", "version", "updated_on", "enabled"])


@app.command("set")
def set_(
    ctx: typer.Context,
    name: NameArgument,
    from_file: Annotated[
        Path | None,
        typer.Option("--from-file", dir_okay=False, help="Read the value from this file."),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Store a new version of a secret, read from stdin, a hidden prompt or --from-file.

    One trailing newline is dropped from the value, so `echo VALUE | revoctl secrets set
    NAME` stores VALUE.
    """
    from revoctl.core.secrets import validate_name

    state = AppState.of(ctx)
    value = _read_value(validate_name(name), from_file)
    written = call(ctx, lambda svc: svc.secrets.set_secret(name, value))
    state.console.emit({"name": written.name, "version": written.version}, output)


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="Secret name: 1-127 letters, digits, dashes.")
    ] = None,
    length: Annotated[
        int, typer.Option("--length", help="Random bytes in the generated value.")
    ] = 32,
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the new value from stdin instead of generating.")
    ] = False,
    show: Annotated[bool, typer.Option("--show", help="Print the new value too.")] = False,
    due: Annotated[
        bool, typer.Option("--due", help="Rotate every secret past its [secrets.rotation] age.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --due: list what is due, change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Same as -o json.")] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Write a new version of a secret (random URL-safe text by default); the old stays readable.

    With --due instead of NAME: rotate every secret older than its [secrets.rotation]
    rule's max_age (for a cron job); exits 1 when one failed.
    """
    from revoctl.core.secrets import validate_name

    output = OutputFormat.json if as_json else output
    if due or dry_run:
        if name is not None or stdin or show or not due:
            raise UsageError("--due takes no NAME, --stdin or --show; --dry-run needs --due")
        from revoctl.cli._secrets_due import rotate_due

        return rotate_due(ctx, dry_run=dry_run, output=output)
    if name is None:
        raise UsageError("give a secret NAME, or --due to rotate every secret past its age")
    state = AppState.of(ctx)
    value = _read_value(validate_name(name), None) if stdin else None
    done = call(ctx, lambda svc: svc.secrets.rotate(name, value, length))
    document: dict[str, Any] = {
        "name": done.name,
        "version": done.version,
        "previous_version": done.previous_version,
        "rotated_on": _timestamp(done.rotated_on),
        "audited": done.audited,
    }
    if show:
        document["value"] = done.value
    state.console.emit(document, output)


@app.command("versions")
def versions(
    ctx: typer.Context, name: NameArgument, output: OutputOption = OutputFormat.table
) -> None:
    """List every version of a secret, newest first; never the values."""
    state = AppState.of(ctx)
    found = call(ctx, lambda svc: svc.secrets.versions(name))
    state.console.emit([_version_record(props) for props in found], output)


@app.command("audit")
def audit(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this secret's rows.")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="DURATION", help="Only rows this recent, e.g. 1h, 7d."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most N rows.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list (as -o json).")] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the audit log, newest first: sets, rotations and (with audit_reads) reads; no values."""
    from revoctl.core.secret_audit import AUDIT_ENTRY_KEYS, audit_entries
    from revoctl.core.secrets import validate_name

    state = AppState.of(ctx)
    try:
        cutoff = datetime.now(UTC) - parse_duration(since) if since is not None else None
    except OverflowError:
        raise UsageError(f"invalid duration {since!r}: too long") from None
    secret = validate_name(name) if name is not None else None
    found = call(ctx, lambda svc: audit_entries(svc.db, name=secret, since=cutoff, limit=limit))
    rows = [{**entry, "at": _timestamp(entry["at"])} for entry in found]
    fmt = OutputFormat.json if as_json else output
    state.console.emit(rows, fmt, list(AUDIT_ENTRY_KEYS), empty="no audit entries")


def _read_value(name: str, path: Path | None) -> str:
    """The value from ``path``, stdin (not a TTY) or a hidden prompt, less a trailing newline."""
    from revoctl.core.secrets.base import MAX_VALUE_BYTES

    # Read one value's worth and a little more: an endless stream (`yes | ...`) must not
    # be read to the end before it is refused.
    limit = MAX_VALUE_BYTES + 3
    if path is not None:
        try:
            with path.open("rb") as fh:
                raw = fh.read(limit)
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    elif not sys.stdin.isatty():
        raw = typer.get_binary_stream("stdin").read(limit)
    else:
        prompted: str = typer.prompt(
            f"Value for {name}", hide_input=True, confirmation_prompt=True, err=True
        )
        raw = prompted.encode()
    if len(raw) >= limit:
        raise UsageError(f"a secret value is limited to {MAX_VALUE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the value is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r")


def _version_record(props: SecretProperties) -> dict[str, Any]:
    return {
        "version": props.version,
        "updated_on": _timestamp(props.updated_on),
        "enabled": props.enabled,
    }


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()
