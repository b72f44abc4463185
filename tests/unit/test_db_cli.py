"""``revoctl db ...`` on the embedded SQLite database, and against an unreachable server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from revoctl.core.db import DatabaseConfig, heads
from tests.conftest import run_revoctl

UNREACHABLE = "postgresql+asyncpg://u:SECRETPW@127.0.0.1:1/x"


def as_json(result: Any) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_ping_json_keys(cli: Any) -> None:
    result = as_json(cli("db", "ping", "-o", "json"))
    assert {"ok", "backend", "latency_ms", "server_version"} <= set(result)
    assert result["ok"] is True and result["backend"] == "sqlite"
    assert isinstance(result["latency_ms"], float)


def test_ping_table(cli: Any) -> None:
    result = cli("db", "ping")
    assert result.exit_code == 0
    assert "backend" in result.stdout and "sqlite" in result.stdout


def test_health_is_degraded_until_migrated(cli: Any) -> None:
    before = as_json(cli("db", "health", "-o", "json"))
    assert {"status", "latency_ms", "pool", "migrations"} <= set(before)
    assert set(before["migrations"]) == {"current", "head", "pending"}
    assert before["status"] == "degraded" and before["migrations"]["pending"] >= 1
    as_json(cli("db", "migrate", "-o", "json"))
    after = as_json(cli("db", "health", "-o", "json"))
    assert after["status"] == "healthy"
    assert after["migrations"] == {"current": heads()[0], "head": heads()[0], "pending": 0}


def test_health_exits_1_when_unhealthy(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVOCTL_DATABASE__URL", UNREACHABLE)
    result = cli("db", "health", "-o", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "unhealthy"
    assert "SECRETPW" not in result.stdout + result.stderr


def test_pool_json_keys(cli: Any) -> None:
    result = as_json(cli("db", "pool", "-o", "json"))
    assert set(result["configured"]) == {
        "pool_size",
        "max_overflow",
        "pool_timeout",
        "pool_recycle",
    }
    assert result["configured"]["pool_size"] == 10
    assert isinstance(result["connections"], list) and result["server_view"] is False


def test_pool_table_says_sqlite_has_no_server_view(cli: Any) -> None:
    result = cli("db", "pool")
    assert result.exit_code == 0
    # Data on stdout, so `revoctl db pool > f` keeps it; whole numbers as whole numbers.
    assert "pool_size=10" in result.stdout and "no server-side view" in result.stdout
    assert "pool_timeout=30," in result.stdout and result.stderr == ""


def test_migrate_current_history_downgrade(cli: Any) -> None:
    head = heads()[0]
    migrated = as_json(cli("db", "migrate", "-o", "json"))
    assert migrated["from"] is None and migrated["to"] == head and "0001" in migrated["applied"]
    assert as_json(cli("db", "current", "-o", "json")) == {
        "current": head,
        "head": head,
        "pending": 0,
    }
    revisions = as_json(cli("db", "history", "-o", "json"))
    assert revisions[-1]["revision"] == "0001" and all(r["applied"] for r in revisions)
    reverted = as_json(cli("db", "downgrade", "base", "-o", "json"))
    assert reverted["from"] == head and reverted["to"] is None and "0001" in reverted["reverted"]
    assert as_json(cli("db", "current", "-o", "json"))["current"] is None


def test_migrate_to_a_revision_then_table_output(cli: Any) -> None:
    result = cli("db", "migrate", "--revision", "0001")
    assert result.exit_code == 0 and "0001" in result.stdout
    history = cli("db", "history")
    assert history.exit_code == 0
    assert history.stdout.splitlines()[0].split() == [
        "REVISION",
        "DOWN_REVISION",
        "HEAD",
        "CURRENT",
        "APPLIED",
        "DESCRIPTION",
    ]


@pytest.mark.parametrize("args", [("migrate", "--revision", "nope"), ("downgrade", "nope")])
def test_unknown_revision_exits_3(cli: Any, args: tuple[str, ...]) -> None:
    result = cli("db", *args)
    assert result.exit_code == 3
    assert result.stderr.startswith("error: unknown revision 'nope'")
    assert result.stdout == ""


def test_migrate_sql_prints_sql_and_connects_to_nothing(cli: Any, revoctl_home: Path) -> None:
    result = cli("db", "migrate", "--sql")
    assert result.exit_code == 0
    assert "CREATE TABLE request_logs" in result.stdout
    assert not (revoctl_home / "revoctl.db").exists()


def test_secret_references_in_the_url_are_resolved_by_the_secret_manager(
    cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = tmp_path / "from-secret.db"
    assert cli("secrets", "set", "db-path", input=str(target)).exit_code == 0
    monkeypatch.setenv("REVOCTL_DATABASE__URL", "sqlite+aiosqlite:///${secret:db-path}")
    assert as_json(cli("db", "ping", "-o", "json"))["ok"] is True
    assert target.is_file()


def test_an_unknown_secret_in_the_url_exits_3(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVOCTL_DATABASE__URL", "postgresql+asyncpg://u:${secret:db-pw}@h/db")
    result = cli("db", "ping")
    assert result.exit_code == 3
    assert "db-pw" in result.stderr


@pytest.mark.slow
def test_ping_unreachable_exits_4_quickly_without_the_password() -> None:
    started = time.perf_counter()
    result = run_revoctl(
        ["db", "ping", "-o", "json"], env={"REVOCTL_DATABASE__URL": UNREACHABLE}, timeout=30
    )
    elapsed = time.perf_counter() - started
    assert result.returncode == 4
    # One deadline, connect_timeout, for the retries; the rest is interpreter start-up.
    assert elapsed < 3 * DatabaseConfig().connect_timeout
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the database")
    assert "127.0.0.1:1/x" in lines[0] and "after 4 attempts" in lines[0]
    assert "SECRETPW" not in result.stdout + result.stderr


def test_db_help_imports_no_backend() -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "revoctl", "db", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0 and "migrate" in result.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines()}
    assert not imported & {"sqlalchemy", "alembic", "asyncpg", "aiosqlite", "redis", "httpx"}


def test_downgrade_by_a_relative_step(cli) -> None:
    assert cli("db", "migrate").exit_code == 0
    result = cli("db", "downgrade", "-1", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)["reverted"]) == 1


def test_an_empty_revision_is_a_usage_error(cli) -> None:
    result = cli("db", "downgrade", "")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: a revision is required")


def test_a_migration_that_fails_in_sql_is_one_clear_line(cli, revoctl_home) -> None:
    import sqlite3

    revoctl_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    with sqlite3.connect(revoctl_home / "revoctl.db") as conn:  # a table in the way of 0001
        conn.execute("CREATE TABLE request_logs (x int)")
    result = cli("db", "migrate")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: migration to 'head' failed:")
    assert "already exists" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_state_directory_that_cannot_be_created_is_exit_4(cli, tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("REVOCTL_HOME", str(blocker / "home"))
    for args in (["db", "ping"], ["secrets", "set", "k1"]):
        result = cli(*args, input="value")
        assert result.exit_code == 4, (args, result.stderr)
        assert "cannot create the directory" in result.stderr
