"""Rendering: rich tables on a terminal, plain columns elsewhere, data never read as markup."""

from __future__ import annotations

import io
import sys

import pytest

from revoctl.cli._console import Console, OutputFormat


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_tables_print_data_literally(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("COLUMNS", "200")
    Console(no_color=True).table(
        ["key", "value"], [["redis.url", "redis://h/[/x]"], ["note", "[bold]x[/bold]"]]
    )
    output = terminal.getvalue()
    assert "redis://h/[/x]" in output
    assert "[bold]x[/bold]" in output


def test_plain_tables_align_columns_and_show_empty_lists(
    capsys: pytest.CaptureFixture[str],
) -> None:
    console = Console()
    console.emit(
        [{"name": "a", "enabled": True}, {"name": "bbb", "enabled": False}], OutputFormat.table
    )
    console.emit([], OutputFormat.table, ["name", "enabled"])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["NAME  ENABLED", "a     yes", "bbb   no", "NAME  ENABLED"]


def test_a_record_renders_as_key_value_rows_with_dotted_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Console().emit({"status": "ok", "pool": {"size": 10, "overflow": 0.5}}, OutputFormat.table)
    assert capsys.readouterr().out.splitlines() == [
        "KEY            VALUE",
        "status         ok",
        "pool.size      10",
        "pool.overflow  0.5",
    ]


def test_errors_are_one_line_whatever_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    Console(no_color=True).error("first\nsecond\n  third")
    assert capsys.readouterr().err == "error: first second third\n"
