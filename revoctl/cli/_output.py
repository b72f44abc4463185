"""All CLI output: data to stdout (table, JSON or YAML), messages and errors to stderr.

Tables are drawn with rich on a terminal and as plain aligned columns otherwise,
so that pipes and scripts get stable text. ``NO_COLOR`` and ``--no-color`` turn
off colour; JSON mode writes exactly one document to stdout. Nothing here imports
Typer, so the probe commands (`revoctl.cli._fast`) print through it without paying
for Typer; the ``-o`` option is in `revoctl.cli._console`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import IO, Any

from revoctl._dotted import flatten
from revoctl.core.errors import CheckFailedError, RevoctlError, UsageError
from revoctl.core.redaction import redact, redact_exception


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


Columns = Sequence[str]
Table = tuple[str | None, Sequence[str], Sequence[Sequence[Any]]]
"""A titled table: ``(title, headers, rows)``."""

NOT_UTF8 = "an argument is not valid UTF-8 text: it holds bytes that cannot be stored or shown"
FREE_TEXT_MIN_WIDTH = 12
"""The narrowest a column of free text is folded to before the table grows past the screen."""


class Console:
    """Where a command writes; one per invocation, built from the global options."""

    def __init__(self, *, no_color: bool = False, verbose: int = 0) -> None:
        self.no_color = no_color or bool(os.environ.get("NO_COLOR"))
        self.verbose = verbose

    def emit(
        self,
        data: Any,
        output: OutputFormat,
        columns: Columns | None = None,
        *,
        empty: str | None = None,
    ) -> None:
        """Print JSON-able ``data``; ``columns`` picks and orders the table columns. An empty
        list shown as a table is the message ``empty`` on stderr instead, when given."""
        if empty is not None and not data and output is OutputFormat.table:
            self.info(empty)
        elif output is OutputFormat.json:
            self._write_stdout(json.dumps(_plain(data), indent=2))
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
            needed = 0
            for index, header in enumerate(headers):
                column = [row[index] for row in cells]
                if any(" " in cell for cell in column):  # free text: fold, never cut short
                    table.add_column(header.upper(), overflow="fold")
                    needed += FREE_TEXT_MIN_WIDTH + 1
                else:  # ids, versions, timestamps: whole, so a double-click copies them
                    widest = max([len(header), *(len(cell) for cell in column)])
                    table.add_column(header.upper(), no_wrap=True, min_width=widest)
                    needed += widest + 1
            for row in cells:
                table.add_row(*(Text(cell) for cell in row))  # data, never rich markup
            screen = RichConsole(no_color=self.no_color, highlight=False)
            # Wider than the terminal only when the ids alone are: the terminal then wraps
            # the line, which still leaves each id whole; rich would cut it.
            screen.width = max(screen.width, needed)
            screen.print(table)
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

    def chart(
        self, title: str, x: Sequence[float], series: Mapping[str, Sequence[float]], xlabel: str
    ) -> None:
        """``series`` (label -> values over ``x``) as a terminal chart on stdout (plotext): lines
        in colour on a terminal; without colour (``NO_COLOR``, a pipe) points, each series with
        a marker of its own."""
        import shutil

        import plotext as plt

        colour = not self.no_color and sys.stdout.isatty()
        plt.clear_figure()
        for (label, values), marker in zip(series.items(), ("o", "x", "+", "*"), strict=False):
            if colour:
                plt.plot(list(x), list(values), label=label, marker="braille")
            else:
                plt.scatter(list(x), list(values), label=label, marker=marker)
        width = min(shutil.get_terminal_size((100, 24)).columns, 120)
        plt.plotsize(width, 20)
        plt.theme("clear")
        plt.title(title)
        plt.xlabel(xlabel)
        text = plt.build()
        self._write_stdout(text if colour else plt.uncolorize(text))

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
        _echo(redact(message), err=True)

    def warn(self, message: str) -> None:
        self._stderr("warning", message, "yellow")

    def error(self, message: str) -> None:
        self._stderr("error", message, "red")

    def _stderr(self, label: str, message: str, colour: str) -> None:
        """``label: message`` on one line: a message's own line breaks are folded (after
        masking, so that a secret is recognised before its shape changes)."""
        message = escape_controls(" ".join(redact(message).split()))
        prefix = f"{label}:"
        if not self.no_color and sys.stderr.isatty():
            from typer import style

            prefix = style(prefix, fg=colour, bold=True)
        _echo(f"{prefix} {message}", err=True)

    def fail(self, exc: BaseException) -> int:
        """Report ``exc`` on stderr, the traceback too with -v; return its exit code.

        A `RevoctlError` carries its CONTRACT exit code; so does text that cannot be
        encoded for lack of UTF-8 (an argument holding bytes the locale could not decode,
        which Python keeps as lone surrogates): a usage error. Anything else is a bug or
        an environment fault: exit 1, with a hint at -v.
        """
        if isinstance(exc, UnicodeEncodeError) and "surrogates" in exc.reason:
            message, code, hint = NOT_UTF8, UsageError.exit_code, False
        elif isinstance(exc, RevoctlError):
            message, code, hint = str(exc), exc.exit_code, False
        else:
            line = next(iter(str(exc).splitlines()), "")
            message, code, hint = f"unexpected {type(exc).__name__}: {line}", 1, True
        if self.verbose and not isinstance(exc, CheckFailedError):  # a verdict, not a fault
            sys.stderr.write(redact_exception(exc))
        elif hint:
            message += " (run with -v for details)"
        self.error(message)
        return code

    @staticmethod
    def _write_stdout(text: str) -> None:
        _echo(text)


_ANSI = re.compile(r"\033\[[;?0-9]*[a-zA-Z]")
"""An ANSI style sequence, as click recognises one to strip it."""


def _echo(text: str, *, err: bool = False) -> None:
    """Write a line as Typer's ``echo`` does, without importing Typer: styles stripped
    when the stream is no terminal, flushed. Where click would re-wrap the stream (an
    ASCII one) or talk to a Windows console, Typer's own ``echo`` does it."""
    stream: IO[str] | None = sys.stderr if err else sys.stdout
    if stream is None:
        return
    if sys.platform == "win32" or _is_ascii(getattr(stream, "encoding", None) or "ascii"):
        from typer import echo

        echo(text, err=err)
        return
    if not _isatty(stream):
        text = _ANSI.sub("", text)
    stream.write(text + "\n")
    stream.flush()


def _is_ascii(encoding: str) -> bool:
    import codecs

    try:
        return codecs.lookup(encoding).name == "ascii"
    except LookupError:
        return False


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except Exception:
        return False


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
    return escape_controls(str(value))


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""What a terminal acts on rather than shows: C0/C1 controls (a BEL rings, an ESC starts a
sequence), line separators, and the bidirectional overrides that reorder what is shown."""


def escape_controls(text: str) -> str:
    """``text`` with each control character shown as its escape (BEL as ``\\x07``), so
    that data (a ``--reason``, a name) can neither ring, move the cursor nor restyle the
    terminal, nor break a table's line."""
    return _CONTROL.sub(lambda match: match[0].encode("unicode_escape").decode("ascii"), text)


def _plain(data: Any) -> Any:
    """Only plain types (enums, datetimes as text), and whole numbers as whole numbers:
    ``3600``, not ``3600.0``, as the configuration and the README write them."""
    return _whole(json.loads(json.dumps(data, default=str)))


def _whole(data: Any) -> Any:
    if isinstance(data, float) and data.is_integer() and abs(data) < 2**53:
        return int(data)
    if isinstance(data, dict):
        return {key: _whole(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_whole(item) for item in data]
    return data
