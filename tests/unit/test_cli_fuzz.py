"""Fuzz of the command line: every command, hostile arguments, a clear answer each time.

Hypothesis builds command lines from the Typer tree itself (each command's own options and
arguments, by type: numbers out of range or not numbers, choices in any case, names,
paths, free text with control characters and any script), with global flags in front,
stray tokens and ``--opt=value`` forms mixed in. Each line runs in-process as ``revoctl``
runs it: `revoctl.cli._fast.run_fast` first (``db ping`` and ``health`` without Typer),
then the Typer app, against a temporary ``REVOCTL_HOME``. A line `run_fast` answers is
run through Typer too, and must get the same exit code.

Every answer must be an exit code of the CONTRACT's table (0-4), at most one ``error:``
line, no traceback (unless ``-v`` asked for one) and no "unexpected" error (a bug's
message). ``serve``, ``breakers status --watch`` and ``db downgrade`` are fuzzed in
parsing only: their configuration and arguments are checked as always, then a stand-in
takes the place of the server and its socket, the live view (it ends at its first frame,
as Ctrl-C does) and the downgrade. Redis is a closed port, so a Redis store answers 4 and no shared
server is written to.

Seeded (``derandomize``), bounded (`EXAMPLES` a test), each case cut at `CASE_SECONDS`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer._click.core import Context
from typer.testing import CliRunner

from revoctl.cli import app
from revoctl.cli._app import ALIASES
from revoctl.cli._fast import run_fast
from revoctl.cli._output import Console

EXAMPLES_PER_COMMAND = 60
"""Command lines tried for each command of the tree."""
PROBE_EXAMPLES = 150
"""Lines tried of the two the probe parser reads itself."""
CASE_SECONDS = 20
CONTRACT_CODES = frozenset(range(5))
BUG = re.compile(r"^error: unexpected [A-Za-z_][\w.]*: ", re.MULTILINE)
"""How `Console.fail` reports an exception that is not a `RevoctlError`: a bug."""
CASES: list[list[str]] = []
"""Every line run, for the count in the closing note (``pytest -s`` prints it)."""
PROBED: list[list[str]] = []
"""The lines `run_fast` answered (and Typer agreed with)."""

CONFIG = """
[limits]
store = "sql"
[[limits.rules]]
name = "api"
requests = 5
window_seconds = 60
[[limits.rules]]
name = "win"
requests = 3
window_seconds = 10
algorithm = "fixed_window"
scope = "per_ip"
"""


def _commands() -> dict[tuple[str, ...], list[Any]]:
    """Every command's path (``("limits", "test")``) and its Typer parameters."""
    found: dict[tuple[str, ...], list[Any]] = {}

    def walk(command: Any, path: tuple[str, ...], ctx: Context) -> None:
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                walk(sub, (*path, name), Context(sub, parent=ctx))
        else:
            found[path] = list(command.params)

    root = typer.main.get_command(app)
    walk(root, (), Context(root))
    return found


COMMANDS = _commands()
TEXT = st.text(
    st.one_of(
        st.characters(codec="utf-8", exclude_characters="\x00"),
        st.sampled_from(["\udcff", "\udce9"]),  # a byte that is not UTF-8, as Python keeps it
    ),
    max_size=12,
)
NAMES = st.sampled_from(
    ["api", "win", "openai_api", "database", "nosuch", "db-password", "ci", "base", "head",
     "-1", "0001", "a" * 200, "bad name!", "${secret:x}", "x\x07y", "—", "..", "/"]
)  # fmt: skip
NUMBERS = st.sampled_from(["0", "-1", "1", "3", "1e3", "0x10", "9" * 30, "", "nan", "inf"])
FLOATS = st.floats(allow_nan=True, allow_infinity=True).map(repr)
SET_KEYS = st.sampled_from(
    ["database.pool_size", "limits.store", "limits.failure_mode", "health.timeout_seconds",
     "breakers.store", "breakers.defaults.failure_threshold", "logging.level", "logging.format",
     "gateway.auth", "redis.cluster", "secrets.cache_ttl_seconds", "nosuch.key", "limits",
     "limits.rules", ""]
)  # fmt: skip
SET_VALUES = st.one_of(
    st.sampled_from(["memory", "sql", "redis", "true", "0", "-5", "debug", "text", "none", "[]"]),
    TEXT,
)


def _value(param: Any, paths: list[str]) -> st.SearchStrategy[str]:
    """A value for ``param``, by its type: mostly plausible, often not."""
    kind = param.bare_type()
    choices = getattr(param.type_descriptor, "choices", None)
    if choices:
        values = [str(getattr(choice, "value", choice)) for choice in choices]
        plausible: st.SearchStrategy[str] = st.sampled_from(values + [v.upper() for v in values])
    elif kind == "int":
        plausible = st.one_of(st.integers(-10, 10**7).map(str), NUMBERS)
    elif kind == "float":
        plausible = st.one_of(st.integers(-10, 10**7).map(str), FLOATS, NUMBERS)
    elif kind == "Path":
        plausible = st.sampled_from(paths)
    else:
        plausible = st.one_of(NAMES, NUMBERS)
    return st.one_of(plausible, plausible, plausible, TEXT)


@st.composite
def _global_flags(draw: st.DrawFn, paths: list[str]) -> list[str]:
    """Mostly none or good ones (so that the command runs); now and then a bad one."""
    flags: list[str] = []
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.integers(0, 3)):
            flags += draw(
                st.sampled_from([["-v"], ["-vv"], ["--no-color"], ["-o", "json"], ["-oyaml"]])
            )
            continue
        flags += draw(
            st.one_of(
                st.sampled_from([["--verbose"], ["--nosuch"], ["-q"]]),
                st.tuples(st.sampled_from(["-o", "--output"]), _choice_or_text()).map(list),
                st.tuples(st.just("--profile"), st.one_of(st.just("prod"), TEXT)).map(list),
                st.tuples(st.just("--config"), st.sampled_from(paths)).map(list),
                st.tuples(st.just("--set"), _set_flag()).map(list),
            )
        )
    return flags


def _choice_or_text() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(["json", "yaml", "table", "JSON", "xml", ""]), TEXT)


@st.composite
def _set_flag(draw: st.DrawFn) -> str:
    key, value = draw(SET_KEYS), draw(SET_VALUES)
    return draw(st.sampled_from([f"{key}={value}", key, f"={value}"]))


@st.composite
def _command_args(draw: st.DrawFn, params: list[Any], paths: list[str]) -> list[str]:
    """Some of the command's parameters, in any order, plus stray tokens."""
    pieces: list[list[str]] = []
    for param in params:
        if param.param_type_name == "argument":
            if draw(st.integers(0, 9)):  # now and then missing
                pieces.append([draw(_value(param, paths))])
            continue
        if not draw(st.booleans()):
            continue
        name = draw(st.sampled_from(param.opts))
        if getattr(param, "is_flag", False):
            pieces.append([name])
        elif name.startswith("--") and draw(st.booleans()):
            pieces.append([f"{name}={draw(_value(param, paths))}"])
        else:
            value = [draw(_value(param, paths))] if draw(st.integers(0, 9)) else []
            pieces.append([name, *value])  # sometimes the value is missing
    for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 3)) == 0 else 0):
        stray = st.one_of(st.sampled_from(["--", "-", "--nosuch", "-x", "--help"]), TEXT)
        pieces.insert(draw(st.integers(0, len(pieces))), [draw(stray)])
    return [token for piece in draw(st.permutations(pieces)) for token in piece]


@st.composite
def command_lines(draw: st.DrawFn, path: tuple[str, ...], paths: list[str]) -> list[str]:
    """A whole command line for ``path``: global flags, the command (now and then by its
    alias, its group alone or misspelt), its parameters."""
    head = list(path)
    if len(head) > 1 and draw(st.integers(0, 9)) == 0:
        aliases = [alias for alias, group in ALIASES.items() if group == head[0]]
        head[0] = aliases[0] if aliases else head[0]
    if draw(st.integers(0, 19)) == 0:
        head = draw(st.sampled_from([head[:1], [head[0] + "x"], []]))
    return [
        *draw(_global_flags(paths)),
        *head,
        *draw(_command_args(COMMANDS[path], paths)),
    ]


@st.composite
def probe_lines(draw: st.DrawFn, paths: list[str]) -> list[str]:
    """What `run_fast` reads itself: global flags, ``db ping`` or ``health``, their flags."""
    command = draw(st.sampled_from([["db", "ping"], ["health"]]))
    flags: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["-o", "--output", "--fail-on", "-oJSON", "--output=yaml"]))
        value = draw(st.one_of(st.sampled_from(["degraded", "unhealthy", "json", "Table"]), TEXT))
        flags += [name] if "=" in name or name.startswith("-oJ") else [name, value]
    return [*draw(_global_flags(paths)), *command, *flags]


# ---------------------------------------------------------------- running a line


class CaseTimeout(BaseException):
    """A case ran past `CASE_SECONDS` (a BaseException: nothing in the CLI catches it)."""


@contextlib.contextmanager
def time_cap(seconds: float) -> Iterator[None]:
    def expired(signum: int, frame: FrameType | None) -> None:
        raise CaseTimeout(f"a case ran past {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def revoctl(args: list[str]) -> tuple[int, str, str]:
    """``revoctl ARGS`` as `revoctl.cli.main` runs it: the probe path, else Typer."""
    CASES.append(args)
    out, err = io.StringIO(), io.StringIO()
    with time_cap(CASE_SECONDS):
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run_fast(args, os.environ)
        if code is not None:
            typer_code, _, _ = typer_run(args)
            assert typer_code == code, f"run_fast said {code}, Typer {typer_code}: {args}"
            PROBED.append(args)
            return code, out.getvalue(), err.getvalue()
        return typer_run(args)


def typer_run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args, input="", catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def assert_clear_answer(args: list[str], code: int, stdout: str, stderr: str) -> None:
    where = f"revoctl {' '.join(map(repr, args))} -> {code}\n{stderr[-1500:]}"
    assert code in CONTRACT_CODES, where
    verbose = any(arg in ("--verbose",) or arg.startswith("-v") for arg in args)
    if not verbose:
        assert "Traceback" not in stderr + stdout, where
    assert not BUG.search(stderr), where
    assert sum(line.startswith("error:") for line in stderr.splitlines()) <= 1, where


@pytest.fixture
def fuzz_home(revoctl_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The configuration and stand-ins every case runs with; returns the paths to draw from."""
    config = tmp_path / "fuzz.toml"
    config.write_text(CONFIG)
    broken = tmp_path / "broken.toml"
    broken.write_text("[limits\nstore = ")
    value = tmp_path / "value.txt"
    value.write_text("a-secret-value-from-a-file\n")
    monkeypatch.setenv("REVOCTL_CONFIG", str(config))
    monkeypatch.setenv("REVOCTL_REDIS__URL", "redis://127.0.0.1:1/0")  # closed: answers 4
    monkeypatch.setenv("REVOCTL_SECRETS__TIMEOUT_SECONDS", "2")

    from revoctl.runtime import server

    def no_server(**kwargs: Any) -> None:
        """`serve` parsed, configured and checked: here it would start listening."""

    def no_socket(host: str, port: int) -> None:
        """No port is bound (other tests on this machine may want it); the address checks
        have tests of their own (``test_cli_answers``)."""

    @contextlib.contextmanager
    def first_frame(self: Console) -> Iterator[Any]:
        def show(tables: Any) -> None:
            raise KeyboardInterrupt  # the watch drew once; Ctrl-C, as an operator ends it

        yield show

    async def no_downgrade(db: Any, revision: str) -> dict[str, Any]:
        return {"revision": revision, "downgraded": False}

    monkeypatch.setattr(server, "run", no_server)
    monkeypatch.setattr(server, "listening_socket", no_socket)
    monkeypatch.setattr(Console, "live", first_frame)
    monkeypatch.setattr("revoctl.core.db.downgrade", no_downgrade)
    return [str(config), str(broken), str(value), str(tmp_path), "/nonexistent/x.toml", ""]


FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one home for every case, on purpose
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
@settings(FUZZ, max_examples=EXAMPLES_PER_COMMAND)
@given(data=st.data())
def test_every_command_line_gets_a_clear_answer(
    fuzz_home: list[str], path: tuple[str, ...], data: st.DataObject
) -> None:
    args = data.draw(command_lines(path, fuzz_home), label="argv")
    assert_clear_answer(args, *revoctl(args))


@settings(FUZZ, max_examples=PROBE_EXAMPLES)
@given(data=st.data())
def test_every_probe_line_gets_the_answer_typer_gives(
    fuzz_home: list[str], data: st.DataObject
) -> None:
    args = data.draw(probe_lines(fuzz_home), label="argv")
    assert_clear_answer(args, *revoctl(args))


def test_the_fuzz_counts_its_cases() -> None:
    """Runs after the fuzz tests above (file order) and prints their count (``pytest -s``)."""
    if not CASES:
        pytest.skip("runs with the fuzz tests above")
    assert len(CASES) >= len(COMMANDS) * EXAMPLES_PER_COMMAND
    print(f"\nCLI fuzz: {len(CASES)} command lines, {len(PROBED)} answered by the probe path")
