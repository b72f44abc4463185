"""``db ping`` without Typer or pydantic and ``health`` without Typer: the same answers as
the Typer path; ``db ping`` from settings that a run validated, never from a stale or
invalid configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from revoctl import _probe_cache
from revoctl._layers import read_sources
from revoctl._probe_cache import cache_path, recall, remember
from revoctl.cli._fast import Invocation, parse
from revoctl.cli._output import OutputFormat
from revoctl.config import validate_sources

_RUN = """
import sys
from revoctl.cli import main
if sys.argv[1] == "--typer":
    from revoctl.cli._app import run_typer as main
    del sys.argv[1]
sys.argv = ["revoctl", *sys.argv[1:]]
try:
    main()
finally:
    loaded = sorted({m.split(".")[0] for m in sys.modules} & {"pydantic", "typer"})
    sys.stderr.write("LOADED=" + ",".join(loaded) + "\\n")
"""


def _revoctl(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str, list[str]]:
    """Exit code, stdout, stderr (without the probe's line), and pydantic/typer if loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    *lines, last = proc.stderr.splitlines()
    assert last.startswith("LOADED=")
    stderr = "".join(f"{line}\n" for line in lines)
    return proc.returncode, proc.stdout, stderr, [m for m in last[7:].split(",") if m]


def _remembered(**sources: object) -> None:
    read = read_sources(**{"config_file": None, "profile": None, "overrides": None, **sources,
                           "env": os.environ, "cwd": Path.cwd()})  # fmt: skip
    remember(read, os.environ, validate_sources(read, os.environ).settings)


def _recalled(**sources: object) -> object:
    read = read_sources(**{"config_file": None, "profile": None, "overrides": None, **sources,
                           "env": os.environ, "cwd": Path.cwd()})  # fmt: skip
    return recall(read, os.environ)


def test_the_second_ping_skips_typer_and_pydantic_and_answers_the_same() -> None:
    code, first, _, loaded = _revoctl("db", "ping", "-o", "json")
    assert code == 0 and loaded == ["pydantic", "typer"]
    code, second, _, loaded = _revoctl("db", "ping", "-o", "json")
    assert code == 0 and loaded == []
    one, two = json.loads(first), json.loads(second)
    assert one.keys() == two.keys()
    assert {k: one[k] for k in ("ok", "backend", "server_version")} == {
        k: two[k] for k in ("ok", "backend", "server_version")
    }


def test_an_unreachable_database_fails_the_same_on_both_paths() -> None:
    env = {
        "REVOCTL_DATABASE__URL": "postgresql://u:pw@127.0.0.1:1/x",
        "REVOCTL_DATABASE__RETRY_ATTEMPTS": "0",
    }
    typer_path = _revoctl("--no-color", "db", "ping", env=env)
    fast_path = _revoctl("--no-color", "db", "ping", env=env)
    assert typer_path[3] and not fast_path[3]
    assert typer_path[:3] == fast_path[:3]
    assert typer_path[0] == 4 and "pw" not in typer_path[2]


def test_an_invalid_configuration_is_never_remembered(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[database]\npool_size = -1\n")
    runs = [_revoctl("--config", str(bad), "db", "ping") for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0][0] == 2 and f"{bad}: database.pool_size" in runs[0][2]
    assert not cache_path(os.environ).exists()


def test_a_changed_file_env_flag_or_profile_is_a_new_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "revoctl.toml"
    config.write_text(
        "[database]\nconnect_timeout = 7\n[profiles.ci.database]\nretry_attempts = 1\n"
    )
    assert _recalled() is None
    _remembered()
    assert _recalled().database["connect_timeout"] == 7  # type: ignore[attr-defined]

    config.write_text(
        "[database]\nconnect_timeout = 8\n[profiles.ci.database]\nretry_attempts = 1\n"
    )
    assert _recalled() is None
    _remembered()
    assert _recalled().database["connect_timeout"] == 8  # type: ignore[attr-defined]

    assert _recalled(profile="ci") is None
    assert _recalled(overrides={"database.connect_timeout": "9"}) is None
    monkeypatch.setenv("REVOCTL_LOGGING__LEVEL", "debug")
    assert _recalled() is None
    _remembered()
    assert _recalled().logging["level"] == "debug"  # type: ignore[attr-defined]


def test_changed_code_is_a_new_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    module = package / "settings.py"
    module.write_text("x = 1\n")
    monkeypatch.setattr(_probe_cache, "_PACKAGE", package)
    _remembered()
    assert _recalled() is not None
    module.write_text("x = 22\n")
    assert _recalled() is None


def test_the_url_is_read_from_the_sources_never_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVOCTL_DATABASE__URL", "postgresql://user:hunter2@db.example/app")
    _remembered()
    assert "hunter2" not in cache_path(os.environ).read_text()
    assert _recalled().url == "postgresql+asyncpg://user:hunter2@db.example/app"  # type: ignore[attr-defined]
    assert oct(cache_path(os.environ).stat().st_mode & 0o777) == "0o600"


def test_a_corrupt_cache_is_a_miss() -> None:
    _remembered()
    path = cache_path(os.environ)
    entries = json.loads(path.read_text())
    path.write_text(json.dumps({key: {"database": "x"} for key in entries}))
    assert _recalled() is None
    path.write_text("{not json")
    assert _recalled() is None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["db", "ping"], Invocation()),
        (["-o", "json", "db", "ping"], Invocation(output=OutputFormat.json)),
        (["--output=YAML", "db", "ping", "-ojson"],
         Invocation(output=OutputFormat.yaml, command_output=OutputFormat.json)),
        (["-vv", "--verbose", "--no-color", "db", "ping", "--output", "table"],
         Invocation(verbose=3, no_color=True, command_output=OutputFormat.table)),
        (["--config=c.toml", "--profile", "ci", "--set", "a.b=1", "--set=c.d=2", "db", "ping"],
         Invocation(config="c.toml", profile="ci", sets=["a.b=1", "c.d=2"])),
        (["health"], Invocation(command="health")),
        (["-ojson", "health", "--fail-on", "degraded", "-o", "yaml"],
         Invocation(command="health", output=OutputFormat.json, fail_on="degraded",
                    command_output=OutputFormat.yaml)),
        (["health", "--fail-on=unhealthy"], Invocation(command="health")),
    ],
)  # fmt: skip
def test_the_plain_forms_of_db_ping_are_read(argv: list[str], expected: Invocation) -> None:
    assert parse(argv, {}) == expected


@pytest.mark.parametrize(
    "argv",
    [
        [], ["--help"], ["--version"], ["db"], ["db", "--help"], ["db", "ping", "--help"],
        ["db", "ping", "-h"], ["db", "ping", "extra"], ["db", "pong"], ["health", "extra"],
        ["health", "--fail-on", "Degraded"], ["health", "--fail-on"], ["db", "ping", "--fail-on",
        "degraded"], ["health", "--help"],
        ["-vo", "json", "db", "ping"], ["-o", "xml", "db", "ping"], ["db", "ping", "-o"],
        ["--config", ".", "db", "ping"], ["--profile", "--set", "db", "ping"],
        ["db", "-v", "ping"], ["--", "db", "ping"], ["db", "ping", "--", "x"],
    ],
)  # fmt: skip
def test_every_other_command_line_goes_to_typer(argv: list[str]) -> None:
    assert parse(argv, {}) is None


def test_completion_and_a_bad_output_variable_go_to_typer() -> None:
    assert parse(["db", "ping"], {"_REVOCTL_COMPLETE": "complete_bash"}) is None
    assert parse(["db", "ping"], {"REVOCTL_OUTPUT": "xml"}) is None
    assert parse(["db", "ping"], {"REVOCTL_OUTPUT": "Json"}) == Invocation(output=OutputFormat.json)


@pytest.mark.parametrize("args", [["-o", "json"], ["--fail-on", "degraded"]])
def test_health_says_the_same_without_typer(args: list[str]) -> None:
    typer_path = _revoctl("--typer", "health", *args)
    fast_path = _revoctl("health", *args)
    assert "typer" in typer_path[3] and "typer" not in fast_path[3]
    assert typer_path[0] == fast_path[0] and typer_path[2] == fast_path[2]
    if args[0] == "-o":
        one, two = json.loads(typer_path[1]), json.loads(fast_path[1])
        assert one["status"] == two["status"]
        assert {k: v["status"] for k, v in one["services"].items()} == {
            k: v["status"] for k, v in two["services"].items()
        }
    else:
        assert [line.split()[:2] for line in typer_path[1].splitlines()] == [
            line.split()[:2] for line in fast_path[1].splitlines()
        ]


def test_health_leaves_an_invalid_configuration_to_typer() -> None:
    typer_path = _revoctl("--typer", "--set", "databse.url=x", "health")
    fast_path = _revoctl("--set", "databse.url=x", "health")
    assert typer_path == fast_path
    assert typer_path[0] == 2 and "did you mean 'database'" in typer_path[2]
