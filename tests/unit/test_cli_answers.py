"""Issue 17, the CLI's answers: prose is never masked, control characters never reach the
terminal raw, a bad ``${secret:...}`` fails at load, and a reset of a closed breaker is no
transition."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

import revoctl
from revoctl.cli._output import NOT_UTF8, Console
from revoctl.core.breakers._machine import StateMachine
from revoctl.core.breakers.base import SharedState
from revoctl.core.breakers.settings import CircuitBreakerConfig
from revoctl.core.errors import BackendUnavailableError, UsageError
from revoctl.core.redaction import MASK, redact

PACKAGE = Path(revoctl.__file__).parent
MESSAGE_CALLS = ("error", "warn", "info", "fail")
"""Console methods that print a message; every ``...Error(...)`` constructor counts too."""
PLACEHOLDERS = ("demo-name", "x1", "Alpha_2", "3")
"""What a message's fields are filled with: names as operators type them, none a secret."""


def _render(node: ast.expr, placeholder: str) -> str | None:
    """A message as the CLI would print it, each field filled with ``placeholder``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue):
                parts.append(repr(placeholder) if value.conversion == ord("r") else placeholder)
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _render(node.left, placeholder), _render(node.right, placeholder)
        return None if left is None or right is None else left + right
    return None


def _messages() -> list[tuple[str, int, ast.expr]]:
    """Every message revoctl raises or prints: (file, line, the text's expression)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name.endswith("Error") or name in MESSAGE_CALLS:
                found.append((str(path.relative_to(PACKAGE)), node.lineno, node.args[0]))
    return found


def test_no_message_the_cli_can_print_is_masked_where_no_secret_is() -> None:
    rendered = 0
    masked = []
    for where, line, expr in _messages():
        for placeholder in PLACEHOLDERS:
            text = _render(expr, placeholder)
            if text is None:
                continue
            rendered += 1
            if redact(text) != text:
                masked.append(f"{where}:{line}: {text!r} -> {redact(text)!r}")
    assert rendered > 500  # every message with a text, four ways (150 of them today)
    assert masked == []


def test_rotate_of_a_missing_secret_says_create_it_first(cli: Any) -> None:
    result = cli("secrets", "rotate", "nosuch")
    assert result.exit_code == 3
    assert "an existing secret: create it first with 'revoctl secrets set nosuch'" in result.stderr
    assert MASK not in result.stderr


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("secret: hunter2", "hunter2"),
        ("password: Hunter", "Hunter"),
        ("token: 'abcdef'", "abcdef"),
        ('"api_key": "abcdefgh"', "abcdefgh"),
        ("password=hunter", "hunter"),
        ("authorization: bearer abcdefghij", "abcdefghij"),
        ("secret:nospace", "nospace"),
    ],
)
def test_values_are_still_masked(text: str, leak: str) -> None:
    assert leak not in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "rotate writes a new version of an existing secret: create it first",
        "the token: expired at noon",
        "no password: use a key instead",
    ],
)
def test_a_lowercase_word_after_a_colon_is_prose(text: str) -> None:
    assert redact(text) == text


# ---------------------------------------------------------------- control characters


def test_breakers_history_escapes_control_characters_in_a_table(cli: Any) -> None:
    assert cli("db", "migrate").exit_code == 0
    reason = "bell\x07 esc\x1b[31m rlo\u202e"
    assert cli("breakers", "trip", "openai_api", "--reason", reason).exit_code == 0
    table = cli("breakers", "history", "openai_api")
    assert table.exit_code == 0
    assert "operator trip: bell\\x07 esc\\x1b[31m rlo\\u202e" in table.stdout
    assert not any(ch in table.stdout for ch in "\x07\x1b\u202e")
    document = cli("breakers", "history", "openai_api", "-o", "json")
    assert json.loads(document.stdout)[0]["cause"] == f"operator trip: {reason}"  # JSON is JSON
    status = cli("breakers", "status", "openai_api")
    assert "\x07" not in status.stdout and "bell\\x07" in status.stdout


def test_an_error_line_escapes_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    Console(no_color=True).error("no breaker named a\x07b\x1b[2J")
    assert capsys.readouterr().err == "error: no breaker named a\\x07b\\x1b[2J\n"


# ---------------------------------------------------------------- secret references


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("${secret:bad name!}", "invalid secret name 'bad name!'"),
        ("${secret:}", "invalid secret name ''"),
        ("${secret:unclosed", "not closed"),
        ("pre-${secret:ok}-${secret:x y}", "invalid secret name 'x y'"),
    ],
)
def test_config_show_refuses_a_bad_secret_reference(cli: Any, value: str, problem: str) -> None:
    result = cli("--set", f"providers.openai.api_key={value}", "config", "show")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid configuration: flag --set:")
    assert "providers.openai.api_key" in lines[0] and problem in lines[0]


def test_a_bad_reference_in_a_file_names_the_file(cli: Any, tmp_path: Path) -> None:
    config = tmp_path / "refs.toml"
    config.write_text('[redis]\nurl = "redis://:${secret:no_underscores}@cache:6379/0"\n')
    result = cli("--config", str(config), "config", "show")
    assert result.exit_code == 2
    assert f"file {config}: redis.url: invalid secret name 'no_underscores'" in result.stderr


def test_good_references_still_load(cli: Any) -> None:
    result = cli("--set", "redis.url=redis://:${secret:redis-pass}@cache:6379/0", "config", "show")
    assert result.exit_code == 0, result.stderr


# ---------------------------------------------------------------- breakers: transitions only


def test_a_reset_of_a_closed_breaker_writes_no_history(cli: Any) -> None:
    assert cli("db", "migrate").exit_code == 0
    for _ in range(2):
        assert cli("breakers", "reset", "openai_api").exit_code == 0
    history = cli("breakers", "history", "openai_api", "-o", "json")
    assert json.loads(history.stdout) == []
    cli("breakers", "trip", "openai_api", "--reason", "incident")
    cli("breakers", "reset", "openai_api")
    moves = [
        (t["from"], t["to"])
        for t in json.loads(cli("breakers", "history", "openai_api", "-o", "json").stdout)
    ]
    assert moves == [("forced_open", "closed"), ("closed", "forced_open")]


def test_a_process_that_follows_a_reset_of_a_closed_breaker_records_no_transition() -> None:
    """A worker starting after resets (the record's generation is past 0) restarts its window
    and records nothing: no ``closed -> closed (operator reset)``."""
    machine = StateMachine(CircuitBreakerConfig(name="openai_api"))
    machine.state.record_failure("timeout")
    machine.follow(SharedState("openai_api", "closed", version=3, generation=2), lambda t: t)
    assert machine.generation == 2
    assert machine.state.failures == 0  # the window started again
    assert machine.transition_count == 0 and list(machine.transitions) == []


def test_an_argument_that_is_not_utf8_is_a_usage_error(cli: Any) -> None:
    """``--reason $'a\\xffb'``: Python keeps the byte as a lone surrogate, which no store
    can encode; found by hand beside the fuzz (exit 1, 'unexpected UnicodeEncodeError')."""
    assert cli("db", "migrate").exit_code == 0
    result = cli("breakers", "trip", "openai_api", "--reason", "a\udcffb")
    assert result.exit_code == 2
    assert result.stderr == f"error: {NOT_UTF8}\n"


# ---------------------------------------------------------------- serve's address


@pytest.mark.parametrize(
    "host", ["", "a" * 300, "\udcff", "[::1]", "no-such-host.invalid", "1.2.3.4.5", "h:80"]
)
def test_serve_refuses_a_host_it_cannot_listen_on_as_a_usage_error(host: str) -> None:
    from revoctl.runtime.server import listening_socket

    with pytest.raises(UsageError, match="^--host "):
        listening_socket(host, 0)


def test_serve_refuses_a_port_in_use_as_unavailable() -> None:
    import socket

    from revoctl.runtime.server import listening_socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BackendUnavailableError, match="already in use"):
            listening_socket("127.0.0.1", port)
