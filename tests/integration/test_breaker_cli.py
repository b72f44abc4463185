"""``revoctl breakers`` on every store (memory, SQLite, PostgreSQL, Redis): status, trip,
reset, history, their exit codes, health, and --watch ending cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from revoctl.core.breakers import PREDEFINED_BREAKERS
from revoctl.core.db import SHIPPED_REVISIONS as REVISIONS
from tests.support.breakers import ALL_BREAKER_STORES, Target, store_target
from tests.unit.test_cli import _loaded_backends

CONTRACT_KEYS = {"name", "state", "failure_count", "success_count", "opened_at", "forced", "reason"}


def as_json(result: Any) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> Target:
    found = store_target(request.param, request, tmp_path)
    for name, value in found.environ().items():
        monkeypatch.setenv(name, value)
    if found.store == "sql":
        assert cli("db", "migrate").exit_code == 0
    return found


@pytest.mark.parametrize("target", ALL_BREAKER_STORES, indirect=True)
def test_status_trip_history_reset_on_every_store(cli: Any, target: Target) -> None:
    listed = as_json(cli("breaker", "status", "-o", "json"))
    assert [item["name"] for item in listed] == list(PREDEFINED_BREAKERS)
    for item in listed:
        assert set(item) >= CONTRACT_KEYS
        assert (item["state"], item["forced"], item["opened_at"]) == ("closed", False, None)
        assert item["control_plane"]["status"] == "ok"

    tripped = cli("breakers", "trip", "openai_api", "--reason", "provider incident", "-o", "json")
    item = as_json(tripped)
    assert (item["name"], item["state"], item["forced"]) == ("openai_api", "forced_open", True)
    assert item["reason"] == "provider incident" and item["opened_at"] is not None
    assert ("store is memory" in tripped.stderr) is (target.store == "memory")

    [shown] = as_json(cli("breakers", "status", "openai_api", "-o", "json"))
    if target.store != "memory":  # each command is its own process: memory ends with it
        assert (shown["state"], shown["reason"]) == ("forced_open", "provider incident")
        history = as_json(cli("breakers", "history", "openai_api", "-o", "json"))
        assert [(h["from"], h["to"]) for h in history] == [("closed", "forced_open")]
        assert history[0]["cause"] == "operator trip: provider incident"

    item = as_json(cli("breakers", "reset", "openai_api", "-o", "json"))
    assert (item["state"], item["forced"], item["reason"]) == ("closed", False, None)
    if target.store != "memory":
        assert item["generation"] == 1
        history = as_json(cli("breakers", "history", "openai_api", "-o", "json"))
        assert [h["to"] for h in history] == ["closed", "forced_open"]  # newest first

    everything = as_json(cli("breakers", "reset", "--all", "-o", "json"))
    assert {i["name"] for i in everything} >= set(PREDEFINED_BREAKERS)
    assert all(i["state"] == "closed" for i in everything)


@pytest.mark.parametrize("target", ALL_BREAKER_STORES[1:2], indirect=True)
def test_tables_for_people(cli: Any, target: Target) -> None:
    cli("breakers", "trip", "anthropic_api", "--for", "60")
    table = cli("breakers", "status")
    assert table.exit_code == 0
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "STATE", "FAILURE_COUNT"]
    assert any(line.startswith("control plane: ") for line in rows)
    history = cli("breakers", "history", "anthropic_api")
    assert history.exit_code == 0 and "operator trip for 60s" in history.stdout


@pytest.mark.parametrize("target", ALL_BREAKER_STORES[1:2], indirect=True)
def test_timed_trip_runs_out(cli: Any, target: Target) -> None:
    seconds = 0.5
    as_json(cli("breakers", "trip", "deepseek_api", "--for", str(seconds), "-o", "json"))
    time.sleep(seconds)
    [item] = as_json(cli("breakers", "status", "deepseek_api", "-o", "json"))
    assert (item["state"], item["forced"]) == ("closed", False)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["trip", "nosuch"], 3, "no circuit breaker 'nosuch'"),
        (["status", "nosuch"], 3, "no circuit breaker 'nosuch'"),
        (["history", "nosuch"], 3, "no circuit breaker 'nosuch'"),
        (["reset", "nosuch"], 3, "no circuit breaker 'nosuch'"),
        (["reset"], 2, "give a breaker NAME or --all"),
        (["reset", "redis", "--all"], 2, "give a breaker NAME or --all"),
        (["trip", "redis", "--for", "0"], 2, "--for"),
        (["trip", "redis", "--reason", "x" * 600], 2, "--reason is limited"),
        (["status", "--watch", "-o", "json"], 2, "--watch draws a live table"),
        (["history", "redis", "--limit", "0"], 2, "--limit"),
    ],
)
def test_bad_input_is_one_line_with_the_documented_exit_code(
    cli: Any, monkeypatch: pytest.MonkeyPatch, args: list[str], code: int, message: str
) -> None:
    monkeypatch.setenv("REVOCTL_BREAKERS__STORE", "memory")
    result = cli("breakers", *args)
    assert result.exit_code == code, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_status_before_migrating_answers_and_says_why_nothing_is_shared(
    cli: Any, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    monkeypatch.setenv("REVOCTL_DATABASE__URL", postgres_url)
    result = cli("breakers", "status", "-o", "json")
    assert result.exit_code == 0
    assert len(json.loads(result.stdout)) == len(PREDEFINED_BREAKERS)
    assert "not migrated (run 'revoctl db migrate')" in result.stderr
    tripped = cli("breakers", "trip", "redis")
    assert tripped.exit_code == 2 and "revoctl db migrate" in tripped.stderr


def test_the_embedded_database_is_migrated_on_the_first_trip(cli: Any, revoctl_home: Path) -> None:
    """SQLite, as for secrets and limits: a new user's first trip needs no ``db migrate``;
    reads before it (status, history, health) find nothing written and change nothing."""
    before = cli("breakers", "status", "-o", "json")
    assert before.exit_code == 0 and before.stderr == ""
    assert {item["control_plane"]["status"] for item in json.loads(before.stdout)} == {"ok"}
    assert as_json(cli("breakers", "history", "redis", "-o", "json")) == []
    assert json.loads(cli("db", "current", "-o", "json").stdout)["pending"] == len(REVISIONS)

    tripped = cli("breakers", "trip", "redis", "--reason", "first use", "-o", "json")
    assert as_json(tripped)["state"] == "forced_open" and tripped.stderr == ""
    [shown] = as_json(cli("breakers", "status", "redis", "-o", "json"))
    assert (shown["state"], shown["reason"]) == ("forced_open", "first use")
    assert json.loads(cli("db", "current", "-o", "json").stdout)["pending"] == 0


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param(
            {
                "REVOCTL_BREAKERS__STORE": "redis",
                "REVOCTL_REDIS__URL": "redis://:canary-pw-77@127.0.0.1:1/0",
            },
            id="redis",
        ),
        pytest.param(
            {
                "REVOCTL_BREAKERS__STORE": "sql",
                "REVOCTL_DATABASE__URL": "postgresql+asyncpg://u:canary-pw-77@127.0.0.1:1/x",
                "REVOCTL_DATABASE__RETRY_ATTEMPTS": "0",
            },
            id="postgres",
        ),
    ],
)
def test_an_unreachable_store_is_exit_4_and_the_health_says_degraded(
    cli: Any, monkeypatch: pytest.MonkeyPatch, settings: dict[str, str]
) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    for args in (["status"], ["trip", "openai_api"], ["reset", "--all"], ["history", "redis"]):
        result = cli("breakers", *args)
        assert result.exit_code == 4, (args, result.stderr)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
        assert "canary-pw-77" not in result.stderr + result.stdout
    health = cli("health", "-o", "json")
    breakers = json.loads(health.stdout)["services"]["circuit_breakers"]
    assert breakers["status"] == "degraded"
    assert breakers["control_plane"]["status"] == "unreachable"
    assert "canary-pw-77" not in health.stdout + health.stderr


def test_health_reports_circuit_breakers_degraded_while_one_is_open(cli: Any) -> None:
    assert cli("db", "migrate").exit_code == 0
    healthy = json.loads(cli("health", "-o", "json").stdout)
    assert healthy["services"]["circuit_breakers"]["status"] == "healthy"
    assert cli("breakers", "trip", "openai_api", "--reason", "incident").exit_code == 0
    document = json.loads(cli("health", "-o", "json").stdout)
    breakers = document["services"]["circuit_breakers"]
    assert breakers["status"] == "degraded" and document["status"] == "degraded"
    assert breakers["open"] == ["openai_api"]
    assert "openai_api" in breakers["reason"]


@pytest.mark.parametrize(
    "args",
    [["breakers", "--help"], ["breaker", "status", "--help"], ["breakers", "trip", "--help"]],
)
def test_breakers_help_imports_no_backend(args: list[str]) -> None:
    stdout, loaded = _loaded_backends(args)
    assert "USAGE" in stdout
    assert loaded == []


@pytest.mark.parametrize(
    "target",
    [p for p in ALL_BREAKER_STORES if p.values[0] in ("sqlite", "postgres")],
    indirect=True,
)
def test_status_and_health_read_the_sql_store_without_sqlalchemy(cli: Any, target: Target) -> None:
    """A short-lived process that only reads (status, health) reads on the raw driver:
    the pool, SQLAlchemy and Alembic are for the processes that write."""
    assert cli("breakers", "trip", "redis", "--reason", "read me").exit_code == 0
    for args in (["breakers", "status", "redis", "-o", "json"], ["health", "-o", "json"]):
        stdout, loaded = _loaded_backends(args, target.environ())
        assert not {"sqlalchemy", "alembic"} & {name.split(".")[0] for name in loaded}, args
        found = json.loads(stdout)
        if args[0] == "breakers":
            assert (found[0]["state"], found[0]["reason"]) == ("forced_open", "read me")
            assert found[0]["control_plane"]["status"] == "ok"
        else:
            breakers = found["services"]["circuit_breakers"]
            assert breakers["control_plane"]["status"] == "ok"
            assert "redis" in breakers["open"]


def test_tab_completion_of_the_group_imports_no_backend() -> None:
    env = {
        "_REVOCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": "revoctl breakers ",
        "COMP_CWORD": "2",
    }
    stdout, loaded = _loaded_backends([], env)
    assert {"status", "trip", "reset", "history"} <= set(stdout.split())
    assert loaded == []


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_watch_redraws_until_ctrl_c_then_exits_0(tmp_path: Path) -> None:
    interval = 0.2
    env = {
        **os.environ,
        "REVOCTL_HOME": str(tmp_path),
        "REVOCTL_BREAKERS__STORE": "memory",
        "PYTHONUNBUFFERED": "1",
        "PYTHONFAULTHANDLER": "1",  # a hang below is diagnosed: SIGABRT dumps every thread
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "revoctl",
            "breakers",
            "status",
            "--watch",
            "--interval",
            str(interval),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # Ctrl-C as a terminal delivers it: a shell starts a background job (a CI run
        # under `&` or nohup) with SIGINT ignored, and a child would inherit that.
        preexec_fn=_sigint_default,
    )
    assert proc.stdout is not None
    frames = 0
    deadline = time.monotonic() + 60
    while frames < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        frames += line.startswith("-- ")
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate()
        pytest.fail(f"still running 30 s after Ctrl-C; its threads:\n{err[-6000:]}")
    assert "Traceback" not in err and "error" not in err
