"""All CLI output: data to stdout (table, JSON or YAML), messages and errors to stderr.

Tables are drawn with rich on a terminal and as plain aligned columns otherwise,
so that pipes and scripts get stable text. ``NO_COLOR`` and ``--no-color`` turn
off colour; JSON mode writes exactly one document to stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer

from revoctl._dotted import flatten
from revoctl.core.redaction import redact


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[
    OutputFormat,
    typer.Option(
        "--output",
        "-o",
        envvar="REVOCTL_OUTPUT",
        case_sensitive=False,
        help="Output format.",
        show_default=True,
    ),
]

Columns = Sequence[str]
Table = tuple[str | None, Sequence[str], Sequence[Sequence[Any]]]
"""A titled table: ``(title, headers, rows)``."""


class Console:
    """Where a command writes; one per invocation, built from the global options."""

    def __init__(self, *, no_color: bool = False, verbose: int = 0) -> None:
        self.no_color = no_color or bool(os.environ.get("NO_COLOR"))
        self.verbose = verbose

    def emit(self, data: Any, output: OutputFormat, columns: Columns | None = None) -> None:
        """Print JSON-able ``data``; ``columns`` picks and orders the table columns."""
        if output is OutputFormat.json:
            self._write_stdout(json.dumps(data, indent=2, default=str))
        elif output is OutputFormat.yaml:
            import yaml

            self._write_stdout(yaml.safe_dump(_plain(data), sort_keys=False).rstrip("\n"))
        else:
            self.table(*_rows(data, columns))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        cells = [[cell_text(value) for value in row] for row in rows]
        if sys.stdout.isatty():
            from rich.console import Console as RichConsole
            from rich.table import Table
            from rich.text import Text

            table = Table(box=None, pad_edge=False)
            for header in headers:  # fold long values onto more lines: never cut them short
                table.add_column(header.upper(), overflow="fold")
            for row in cells:
                table.add_row(*(Text(cell) for cell in row))  # data, never rich markup
            RichConsole(no_color=self.no_color, highlight=False).print(table)
            return
        widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
        lines = [[h.upper() for h in headers], *cells]
        for line in lines:
            self._write_stdout(
                "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            )

    @contextlib.contextmanager
    def live(self) -> Iterator[Callable[[Sequence[Table]], None]]:
        """A view redrawn in place on a terminal (``--watch``): yields ``show(tables)``,
        each table ``(title, headers, rows)``. Off a terminal every view is printed in
        turn, under a line with its time, so a pipe or a log file gets each one whole."""
        if not sys.stdout.isatty():

            def print_view(tables: Sequence[Table]) -> None:
                self._write_stdout(f"-- {datetime.now(UTC).isoformat(timespec='seconds')}")
                for title, headers, rows in tables:
                    if title:
                        self._write_stdout(title)
                    self.table(headers, rows)
                self._write_stdout("")

            yield print_view
            return
        from rich.console import Console as RichConsole
        from rich.console import Group
        from rich.live import Live

        with Live(console=RichConsole(no_color=self.no_color, highlight=False)) as live:

            def redraw(tables: Sequence[Table]) -> None:
                parts: list[Any] = []
                for title, headers, rows in tables:
                    parts.append(self._rich_table(headers, rows, title))
                live.update(Group(*parts), refresh=True)

            yield redraw

    def line(self, text: str) -> None:
        """A line of data on stdout, as is (e.g. a secret value for ``$(...)``)."""
        self._write_stdout(text)

    @staticmethod
    def _rich_table(
        headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None
    ) -> Any:
        """One table of a live view, drawn as `table` draws it on a terminal."""
        from rich.table import Table as RichTable
        from rich.text import Text

        table = RichTable(box=None, pad_edge=False, title=title, title_justify="left")
        for header in headers:
            table.add_column(header.upper(), overflow="fold")
        for row in rows:
            table.add_row(*(Text(cell_text(value)) for value in row))  # data, never markup
        return table

    def info(self, message: str) -> None:
        typer.echo(redact(message), err=True)

    def warn(self, message: str) -> None:
        self._stderr("warning", message, "yellow")

    def error(self, message: str) -> None:
        self._stderr("error", message, "red")

    def _stderr(self, label: str, message: str, colour: str) -> None:
        """``label: message`` on one line: a message's own line breaks are folded."""
        message = " ".join(message.split())
        prefix = f"{label}:"
        if not self.no_color and sys.stderr.isatty():
            prefix = typer.style(prefix, fg=colour, bold=True)
        typer.echo(f"{prefix} {redact(message)}", err=True)

    @staticmethod
    def _write_stdout(text: str) -> None:
        typer.echo(text)


def _rows(data: Any, columns: Columns | None) -> tuple[Sequence[str], list[list[Any]]]:
    """A list of records becomes one row each; a single record becomes KEY/VALUE rows."""
    if isinstance(data, Mapping):
        flat = flatten(data)
        keys = columns or list(flat)
        return ["key", "value"], [[key, flat.get(key)] for key in keys]
    records = [flatten(item) if isinstance(item, Mapping) else {"value": item} for item in data]
    keys = list(columns or dict.fromkeys(k for record in records for k in record))
    return keys, [[record.get(key) for key in keys] for record in records]


def cell_text(value: Any) -> str:
    """One value as a table shows it: - for none, yes/no, trimmed floats, lists joined."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))
    if isinstance(value, list | tuple):
        return ", ".join(cell_text(v) for v in value)
    return str(value)


def _plain(data: Any) -> Any:
    """Round-trip through JSON so YAML sees only plain types (enums, datetimes as text)."""
    return json.loads(json.dumps(data, default=str))
