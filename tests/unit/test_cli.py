"""CLI conventions: start-up cost, help, aliases, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from revoctl import __version__

BACKENDS = ("sqlalchemy", "redis", "azure", "httpx", "aiohttp", "asyncpg", "aiosqlite", "alembic")

_PROBE = """
import sys
from revoctl.cli import main
sys.argv = ["revoctl", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
sys.stderr.write("LOADED=" + ",".join(loaded) + "\\n")
"""


def _loaded_backends(
    args: list[str], extra_env: dict[str, str] | None = None, watched: tuple[str, ...] = BACKENDS
) -> tuple[str, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE % (watched,), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(extra_env or {})},
    )
    line = next(x for x in proc.stderr.splitlines() if x.startswith("LOADED="))
    return proc.stdout, [m for m in line[len("LOADED=") :].split(",") if m]


@pytest.mark.parametrize(
    "args", [["--help"], ["--version"], ["db", "--help"], ["secrets", "--help"]]
)
def test_help_and_version_import_no_backend(args: list[str]) -> None:
    stdout, loaded = _loaded_backends(args)
    assert stdout.strip(), "the command printed nothing"
    assert loaded == []


def test_root_help_imports_no_settings_model() -> None:
    """The root page lists every group (importing their modules): none may pull in pydantic
    and the settings models for it (about 80 ms). Completion is another matter: Typer
    itself coerces the parameters through pydantic there."""
    stdout, loaded = _loaded_backends(["--help"], watched=("pydantic", "pydantic_core"))
    assert "USAGE" in stdout and loaded == []


def test_tab_completion_imports_no_backend() -> None:
    env = {"_REVOCTL_COMPLETE": "complete_bash", "COMP_WORDS": "revoctl db ", "COMP_CWORD": "2"}
    stdout, loaded = _loaded_backends([], env)
    assert "ping" in stdout.split()
    assert loaded == []


def test_version(cli) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"revoctl {__version__}"


def test_help_lists_the_groups(cli) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for group in ("health", "config", "db"):
        assert group in result.stdout


def test_singular_alias_runs_the_group(cli) -> None:
    from revoctl.cli._app import ALIASES, COMMANDS

    for alias, group in ALIASES.items():
        if group in COMMANDS:
            assert cli(alias, "--help").exit_code == 0


def test_unknown_command_is_one_line_exit_2(cli) -> None:
    result = cli("dbx")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: No such command 'dbx'")


def test_bad_output_format_is_exit_2(cli) -> None:
    result = cli("config", "show", "-o", "xml")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert result.stdout == ""


def test_invalid_configuration_is_one_line_exit_2_without_traceback(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[database]\npool_size = -1\n")
    result = cli("--config", str(bad), "config", "show")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert f"{bad}: database.pool_size" in result.stderr
    assert "Traceback" not in result.stderr


def test_verbose_shows_the_traceback(cli, tmp_path: Path) -> None:
    result = cli("-v", "--profile", "nope", "config", "show")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: unknown profile 'nope'")


def test_bad_set_flag_is_exit_2(cli) -> None:
    result = cli("--set", "novalue", "config", "show")
    assert result.exit_code == 2
    assert "--set expects KEY=VALUE" in result.stderr


def test_config_show_json_is_one_document_with_sources(
    cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVOCTL_DATABASE__POOL_SIZE", "4")
    result = cli("--set", "database.max_overflow=2", "config", "show", "-o", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    by_key = {entry["key"]: entry for entry in document["settings"]}
    assert by_key["database.pool_size"] == {
        "key": "database.pool_size",
        "value": 4,
        "source": "env",
        "origin": "env REVOCTL_DATABASE__POOL_SIZE",
    }
    assert by_key["database.max_overflow"]["source"] == "flag"
    assert by_key["secrets.provider"]["source"] == "default"


def test_output_env_sets_the_default_format(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVOCTL_OUTPUT", "yaml")
    result = cli("config", "show")
    assert result.stdout.startswith("config_file:")


def test_table_output_is_plain_text_off_a_tty(cli) -> None:
    result = cli("config", "show")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["config_file", "profile", "home"]
    assert lines[4].split() == ["KEY", "VALUE", "SOURCE", "ORIGIN"]
    assert "\x1b[" not in result.stdout


def test_an_unexpected_error_is_one_line_exit_1(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import revoctl.config

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("first line\nsecond line\nthird")

    monkeypatch.setattr(revoctl.config, "describe_config", explode)
    result = cli("config", "show")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: unexpected RuntimeError: first line (run with -v for details)\n"
    )


def test_a_stray_argument_is_never_echoed(cli) -> None:
    result = cli("secrets", "set", "api-key", "MyS3cretPassw0rd", input="x")
    assert result.exit_code == 2
    assert "MyS3cretPassw0rd" not in result.stdout + result.stderr
    assert "unexpected extra argument" in result.stderr


def test_an_unexpected_error_with_v_shows_the_traceback_not_the_hint(
    cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import revoctl.config

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(revoctl.config, "describe_config", explode)
    result = cli("-v", "config", "show")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == "error: unexpected RuntimeError: boom"
