"""What a new user trips on in the first five minutes, and malformed input that must not fall
through: every invocation gets its documented exit code and one ``error:`` line."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from revoctl.cli._console import Console
from revoctl.core._paths import state_dir
from tests.conftest import run_revoctl

# --- malformed invocations: a table of (arguments, stdin, expected exit code) ---------------

MALFORMED: list[tuple[tuple[str, ...], str | None, int]] = [
    (("nosuchcommand",), None, 2),
    (("secrets", "nosuch"), None, 2),
    (("-o", "xml", "health"), None, 2),
    (("health", "--fail-on", "sometimes"), None, 2),
    (("--set", "nokey", "health"), None, 2),
    (("--set", "database.poolsize=3", "health"), None, 2),
    (("--set", "database.pool_size=abc", "health"), None, 2),
    (("--set", "database.pool_size=10000000000000000000000", "db", "ping"), None, 2),
    (("--set", "database.retry_attempts=1000000", "db", "ping"), None, 2),
    (("--set", "database.connect_timeout=-1", "db", "ping"), None, 2),
    (("--set", "database.url=sqlite+aiosqlite://x", "db", "ping"), None, 2),
    (("--set", "database.url=postgresql://h:99999/db", "db", "ping"), None, 2),
    (("--set", "database.url=postgresql://h:port/db", "db", "ping"), None, 2),
    (("--set", "database.url=mysql://h/db", "db", "ping"), None, 2),
    (("--set", "database.url=not a url", "db", "ping"), None, 2),
    (("--set", "database.url=postgresql://h/db?sslmode=bogus", "db", "ping"), None, 2),
    (("--set", "database.url=postgresql://h/db?nosuchparam=1", "db", "ping"), None, 2),
    (("--set", "database.url=postgresql://h:${secret:p}/db", "db", "ping"), None, 2),
    (("--set", "secrets.provider=azure_key_vault", "secrets", "list"), None, 2),
    (("--set", "secrets.azure.vault_url=http://vault.example", "health"), None, 2),
    (("--set", "secrets.cache_ttl_seconds=1e300", "health"), None, 2),
    (("--set", "redis.url=http://redis.example", "health"), None, 2),
    (("--set", "limits.store=bogus", "health"), None, 2),
    (("--set", "health.timeout_seconds=0", "health"), None, 2),
    (("--profile", "nope", "health"), None, 2),
    (("--config", "/nonexistent/revoctl.toml", "health"), None, 2),
    (("secrets", "get", "bad_name!"), None, 2),
    (("secrets", "get", "x" * 200), None, 2),
    (("secrets", "get", "missing"), None, 3),
    (("secrets", "get", "missing", "--version", "0" * 32), None, 3),
    (("secrets", "rotate", "missing", "--stdin"), "new-value", 3),
    (("secrets", "rotate", "k", "--length", "3"), None, 2),
    (("secrets", "set", "k"), "", 2),
    (("secrets", "list", "--older-than", "3x"), None, 2),
    (("secrets", "list", "--older-than", "9999999999999999w"), None, 2),
    (("db", "downgrade", ""), None, 2),
    (("db", "migrate", "--revision", "nosuch"), None, 3),
    (("db", "migrate", "--revision", " "), None, 2),
]


@pytest.mark.parametrize(("args", "stdin", "code"), MALFORMED, ids=lambda v: repr(v)[:60])
def test_a_malformed_invocation_gets_its_exit_code_and_one_line(
    cli: Any, args: tuple[str, ...], stdin: str | None, code: int
) -> None:
    result = cli(*args, input=stdin)
    assert result.exit_code == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "unexpected" not in lines[0] and "Traceback" not in result.stderr


def test_rotating_a_secret_that_does_not_exist_suggests_set(cli: Any) -> None:
    result = cli("secrets", "rotate", "db-password", "--stdin", input="x-value")
    assert result.exit_code == 3
    assert "revoctl secrets set db-password" in result.stderr


def test_a_libpq_url_with_sslmode_is_translated_not_a_type_error(cli: Any, monkeypatch) -> None:
    monkeypatch.setenv("REVOCTL_DATABASE__URL", "postgresql://u@127.0.0.1:1/x?sslmode=require")
    monkeypatch.setenv("REVOCTL_DATABASE__RETRY_ATTEMPTS", "0")
    result = cli("db", "ping")
    assert result.exit_code == 4
    assert result.stderr.startswith("error: cannot reach the database")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("sslmode=disable", False),
        ("sslmode=require", "require"),
        ("sslmode=prefer", "prefer"),
        ("ssl=true", "require"),
    ],
)
def test_sslmode_becomes_what_asyncpg_takes(query: str, expected: object) -> None:
    from revoctl.core.db._url import parse_database_url

    assert parse_database_url(f"postgresql://h/db?{query}").ssl_argument() == expected


def test_verify_full_builds_a_context_from_sslrootcert(tmp_path: Path) -> None:
    import ssl

    import trustme

    from revoctl.core.db._url import parse_database_url
    from revoctl.core.errors import ConfigError

    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    url = parse_database_url(f"postgresql://h/db?sslmode=verify-full&sslrootcert={ca}")
    context = url.ssl_argument()
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    verify_ca = parse_database_url(f"postgresql://h/db?sslmode=verify-ca&sslrootcert={ca}")
    assert not verify_ca.ssl_argument().check_hostname  # type: ignore[union-attr]
    missing = parse_database_url("postgresql://h/db?sslmode=verify-full&sslrootcert=/nope.pem")
    with pytest.raises(ConfigError, match="sslrootcert"):
        missing.ssl_argument()


def test_a_toml_nested_thousands_deep_is_a_usage_error(cli: Any, tmp_path: Path) -> None:
    config = tmp_path / "deep.toml"
    config.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    result = cli("--config", str(config), "health")
    assert result.exit_code == 2
    assert "nested too deeply" in result.stderr


# --- the state directory ----------------------------------------------------------------------


def test_a_home_that_is_a_file_is_a_usage_error_naming_it(cli: Any, revoctl_home: Path) -> None:
    revoctl_home.write_text("not a directory")
    for args, stdin in ((("secrets", "set", "k"), "v-value"), (("secrets", "get", "k"), None)):
        result = cli(*args, input=stdin)
        assert result.exit_code == 2, result.stderr
        assert str(revoctl_home) in result.stderr
    ping = cli("db", "ping")
    assert ping.exit_code == 2 and str(revoctl_home) in ping.stderr


def test_a_store_that_is_a_directory_is_a_usage_error_naming_it(cli, revoctl_home: Path) -> None:
    (revoctl_home / "secrets.json").mkdir(parents=True)
    os.chmod(revoctl_home, 0o700)
    result = cli("secrets", "get", "k")
    assert result.exit_code == 2
    assert "secrets.json is a directory" in result.stderr


def test_a_database_file_that_is_not_a_database_is_exit_4_naming_it(
    cli: Any, revoctl_home: Path
) -> None:
    revoctl_home.mkdir(mode=0o700)
    (revoctl_home / "revoctl.db").write_bytes(b"this is not SQLite " * 100)
    os.chmod(revoctl_home / "revoctl.db", 0o600)
    for args in (("db", "ping"), ("db", "migrate")):
        result = cli(*args)
        assert result.exit_code == 4, result.stderr
        assert "revoctl.db" in result.stderr and "not a database" in result.stderr
        assert "Background on this error" not in result.stderr
    health = json.loads(cli("health", "-o", "json").stdout)["services"]["database"]
    assert health["status"] == "unhealthy" and "not a database" in health["error"]
    assert "sqlalche.me" not in health["error"]


def test_a_home_others_can_write_is_refused_with_a_chmod_hint(cli, revoctl_home: Path) -> None:
    revoctl_home.mkdir()
    os.chmod(revoctl_home, 0o777)
    result = cli("secrets", "set", "k", input="v-value")
    assert result.exit_code == 2
    assert f"chmod 700 {revoctl_home}" in result.stderr
    assert not (revoctl_home / "secrets.json").exists()


def test_a_home_others_can_read_gets_a_warning(cli: Any, revoctl_home: Path) -> None:
    revoctl_home.mkdir()
    os.chmod(revoctl_home, 0o755)
    result = cli("secrets", "set", "k", input="v-value")
    assert result.exit_code == 0
    assert "can be read by other users" in result.stderr
    assert f"chmod 700 {revoctl_home}" in result.stderr


def test_a_relative_home_is_resolved_once(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert state_dir({"REVOCTL_HOME": "state"}) == tmp_path / "state"
    assert state_dir({"REVOCTL_HOME": "state"}).is_absolute()


def test_the_embedded_database_is_migrated_on_first_use(cli: Any, revoctl_home: Path) -> None:
    result = cli("secrets", "set", "api-key", "-o", "json", input="first-value")
    assert result.exit_code == 0
    assert result.stderr == ""  # no "not migrated" warning for a new user
    with sqlite3.connect(revoctl_home / "revoctl.db") as conn:
        rows = conn.execute("SELECT secret_name, action FROM secret_audit_log").fetchall()
    assert rows == [("api-key", "set")]
    assert json.loads(cli("db", "current", "-o", "json").stdout)["pending"] == 0


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a hung server)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.mark.slow
def test_a_hung_audit_database_is_named_with_its_timeout(cli, monkeypatch, silent_server) -> None:
    timeout = 1
    monkeypatch.setenv("REVOCTL_SECRETS__TIMEOUT_SECONDS", str(timeout))
    monkeypatch.setenv("REVOCTL_DATABASE__URL", f"postgresql://u@127.0.0.1:{silent_server}/x")
    result = cli("secrets", "set", "k", input="v-value")
    assert result.exit_code == 0  # the change stands
    assert f"the audit log did not answer within {timeout}s" in result.stderr


# --- output, as gh and kubectl users expect it ------------------------------------------------


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    err = tmp_path / "stderr"
    for _ in range(5):
        shell = f"{sys.executable} -m revoctl config show 2>{err} | head -1"
        out = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60)
        assert out.stdout.startswith("config_file:")
        assert err.read_text() == ""


def test_db_pool_writes_its_data_to_stdout(tmp_path: Path) -> None:
    target = tmp_path / "pool.txt"
    with target.open("w") as fh:
        done = subprocess.run(
            [sys.executable, "-m", "revoctl", "db", "pool"], stdout=fh, text=True, timeout=60
        )
    assert done.returncode == 0
    assert "pool_size=10" in target.read_text()


def test_output_may_come_before_the_command(cli: Any) -> None:
    before = cli("-o", "json", "health")
    assert json.loads(before.stdout)["status"] in ("healthy", "degraded")
    after = cli("-o", "json", "health", "-o", "yaml")  # the command's own flag wins
    assert after.stdout.startswith("status:")


def test_whole_numbers_stay_whole_in_json(cli: Any) -> None:
    settings = json.loads(cli("config", "show", "-o", "json").stdout)["settings"]
    values = {entry["key"]: entry["value"] for entry in settings}
    assert values["secrets.cache_ttl_seconds"] == 3600
    assert isinstance(values["secrets.cache_ttl_seconds"], int)
    assert '"cache_ttl_seconds": 3600.0' not in cli("config", "show", "-o", "json").stdout


def test_a_failed_check_with_v_shows_no_traceback(cli: Any, monkeypatch) -> None:
    monkeypatch.setenv("REVOCTL_DATABASE__URL", "postgresql://u@127.0.0.1:1/x")
    result = cli("-v", "health")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: status is unhealthy")


def test_a_migration_with_nothing_to_do_says_so(cli: Any) -> None:
    assert cli("db", "migrate").exit_code == 0
    again = cli("db", "migrate")
    assert again.exit_code == 0
    assert "nothing to do: the database is already at" in again.stderr


def _help_pages(cli: Any) -> dict[str, str]:
    from revoctl.cli._app import COMMANDS, SINGLE

    pages = {"revoctl": cli("--help").stdout}
    for group in COMMANDS:
        pages[group] = cli(group, "--help").stdout
        if group in SINGLE:
            continue
        listed = pages[group].split("COMMANDS", 1)[1].split("\n\n", 1)[0]
        for sub in re.findall(r"^  (\S+):", listed, re.MULTILINE):
            pages[f"{group} {sub}"] = cli(group, sub, "--help").stdout
    return pages


def test_help_reads_like_gh(cli: Any) -> None:
    pages = _help_pages(cli)
    assert len(pages) > 10
    for name, page in pages.items():
        assert "USAGE" in page and "FLAGS" in page, name
        for noise in ("<bool>", "<int>", "<str>", "{name}", "╭", "[default:"):
            assert noise not in page, f"{noise!r} in the help of {name}"
        if name != "revoctl":
            assert "--install-completion" not in page, name
    assert "  revoctl secrets set NAME [flags]" in pages["secrets set"]
    code_span = "`echo VALUE | revoctl secrets set NAME`"
    assert any(code_span in line for line in pages["secrets set"].splitlines())
    assert "-v, --verbose  " in pages["revoctl"] or "-v, --verbose " in pages["revoctl"]


def test_terminal_tables_never_fold_ids_or_timestamps(monkeypatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    monkeypatch.setenv("COLUMNS", "80")
    version, when = "9f86d081884c7d659a2feaa0c55ad015", "2026-11-29T03:40:23.123456+00:00"
    rows = [
        ["database-password", version, when, "a long free-text note " * 3],
        ["k", version, when, "short"],
    ]
    Console(no_color=True).table(["name", "version", "updated_on", "note"], rows)
    text = screen.getvalue()
    assert text.count(version) == 2 and text.count(when) == 2  # whole, each on one line
    assert "short" in text and "note" in text.lower()  # the free text is there, folded
    assert "…" not in text


def test_owner_only_mode_of_the_store_after_first_set(cli: Any, revoctl_home: Path) -> None:
    assert cli("secrets", "set", "k", input="v-value").exit_code == 0
    assert stat.S_IMODE((revoctl_home / "secrets.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((revoctl_home / "revoctl.db").stat().st_mode) == 0o600


def test_readme_sequence_rotate_after_set_runs_from_an_empty_state(revoctl_home: Path) -> None:
    steps = [
        (["secrets", "set", "db-password"], "s3cret-value"),
        (["secrets", "rotate", "db-password", "--stdin"], "n3w-value"),
        (["secrets", "versions", "db-password"], None),
    ]
    for args, stdin in steps:
        done = run_revoctl(args, input=stdin)
        assert done.returncode == 0, (args, done.stderr)
