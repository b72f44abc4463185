"""``revoctl limits``: the CONTRACT's JSON and exit codes, on the memory store and the embedded
SQLite database (the default ``store = "sql"``), one process filling and another inspecting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_revoctl
from tests.unit.test_cli import _loaded_backends

CONFIG = """
[limits]
store = "{store}"

[[limits.rules]]
name = "api_generation"
requests = 10
window_seconds = 60
burst_multiplier = 2.0

[[limits.rules]]
name = "per_minute"
requests = 5
window_seconds = 60
algorithm = "sliding_window"
scope = "per_ip"
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def write(store: str = "memory") -> Path:
        path = tmp_path / "revoctl.toml"
        path.write_text(CONFIG.format(store=store))
        monkeypatch.setenv("REVOCTL_CONFIG", str(path))
        return path

    return write


def test_rules_json_has_the_contract_keys(cli, config) -> None:
    config()
    result = cli("limits", "rules", "-o", "json")
    assert result.exit_code == 0
    rules = json.loads(result.stdout)
    assert [r["name"] for r in rules] == ["api_generation", "per_minute"]
    assert {"name", "requests", "window_seconds", "algorithm", "scope", "burst_multiplier"} <= set(
        rules[0]
    )
    assert rules[0]["limit"] == 20 and rules[1]["scope"] == "per_ip"


@pytest.mark.parametrize("store", ["memory", "sql"])
def test_test_reports_20_allowed_5_denied_and_exits_1(cli, config, store: str) -> None:
    config(store)
    if store == "sql":
        assert cli("db", "migrate").exit_code == 0
    result = cli("limits", "test", "api_generation", "--key", "a", "--count", "25", "-o", "json")
    assert result.exit_code == 1, result.stderr
    document = json.loads(result.stdout)
    assert {k: document[k] for k in ("rule", "key", "checks", "allowed", "denied")} == {
        "rule": "api_generation",
        "key": "a",
        "checks": 25,
        "allowed": 20,
        "denied": 5,
    }
    last = document["last"]
    assert set(last) == {"allowed", "remaining", "limit", "retry_after", "reset_after"}
    assert (last["allowed"], last["remaining"], last["limit"]) == (False, 0, 20)
    assert 5.0 < last["retry_after"] <= 6.0
    assert result.stderr.startswith("error: denied by api_generation for key 'a': retry after")
    assert result.stderr.count("\n") == 1


def test_an_allowed_last_check_exits_0_with_retry_after_null(cli, config) -> None:
    config()
    result = cli("limit", "test", "api_generation", "--key", "a", "-o", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["last"]["retry_after"] is None


def test_inspect_in_another_process_sees_the_same_bucket_and_changes_nothing(cli, config) -> None:
    config("sql")  # the embedded SQLite database, shared by the processes of this machine
    assert cli("db", "migrate").exit_code == 0
    filled = run_revoctl(["limits", "test", "api_generation", "--key", "bob", "--count", "7"])
    assert filled.returncode == 0, filled.stderr
    run_revoctl(["limits", "test", "per_minute", "--key", "10.0.0.1", "-w", "2"])
    first = json.loads(
        cli("limits", "inspect", "api_generation", "--key", "bob", "-o", "json").stdout
    )
    assert first["rule"] == "api_generation" and first["key"] == "bob"
    assert (first["algorithm"], first["limit"], first["remaining"]) == ("token_bucket", 20, 13)
    again = json.loads(
        cli("limits", "inspect", "api_generation", "--key", "bob", "-o", "json").stdout
    )
    assert again["remaining"] == 13 and again["reset_after"] <= first["reset_after"]
    every = json.loads(cli("limits", "inspect", "per_minute", "-o", "json").stdout)
    assert [(s["key"], s["remaining"]) for s in every] == [("10.0.0.1", 3)]


def test_reset_one_key_or_all(cli, config) -> None:
    config("sql")
    assert cli("db", "migrate").exit_code == 0
    for key in ("a", "b"):
        cli("limits", "test", "api_generation", "--key", key, "--count", "3")
    result = cli("limits", "reset", "api_generation", "--key", "a", "-o", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["reset"] == 1
    inspected = json.loads(cli("limits", "inspect", "api_generation", "-o", "json").stdout)
    assert [s["key"] for s in inspected] == ["b"]
    assert (
        json.loads(cli("limits", "reset", "api_generation", "--all", "-o", "json").stdout)["reset"]
        == 1
    )
    assert json.loads(cli("limits", "inspect", "api_generation", "-o", "json").stdout) == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["test", "nope"], 3, "error: no rate-limit rule named 'nope'"),
        (["inspect", "nope", "--key", "a"], 3, "error: no rate-limit rule named 'nope'"),
        (["simulate", "nope", "--rate", "1", "--duration", "1"], 3, "error: no rate-limit rule"),
        (["test", "api_generation", "--count", "0"], 2, "error: "),
        (["test", "api_generation", "--weight", "-3"], 2, "error: "),
        (["test", "api_generation", "--key", "x" * 300], 2, "error: a rate-limit key is 1 to 255"),
        (["reset", "api_generation"], 2, "error: give exactly one of --key KEY and --all"),
        (["reset", "api_generation", "--key", "a", "--all"], 2, "error: give exactly one"),
        (["simulate", "api_generation", "--rate", "0", "--duration", "5"], 2, "error: --rate"),
        (["simulate", "api_generation", "--rate", "1e9", "--duration", "60"], 2, "error: 1e+09/s"),
    ],
)
def test_bad_input_is_one_error_line_with_the_documented_code(
    cli, config, args: list[str], code: int, message: str
) -> None:
    config()
    result = cli("limits", *args)
    assert result.exit_code == code, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_unreachable_redis_is_exit_4_without_the_password(cli, config, monkeypatch) -> None:
    config("redis")
    monkeypatch.setenv("REVOCTL_REDIS__URL", "redis://:hunter2-canary@127.0.0.1:1/0")
    monkeypatch.setenv("REVOCTL_REDIS__CONNECT_TIMEOUT", "0.5")
    result = cli("limits", "test", "api_generation", "--key", "a")
    assert result.exit_code == 4
    assert result.stderr.startswith("error: cannot reach Redis at redis://:***@127.0.0.1:1/0")
    assert "hunter2-canary" not in result.stdout + result.stderr


def test_simulate_json_series_counts_every_request(cli, config) -> None:
    config()
    result = cli(
        "limits", "simulate", "api_generation", "--rate", "2", "--duration", "60", "-o", "json"
    )
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert {"rule", "rate", "duration", "allowed", "denied", "series"} <= set(document)
    assert document["allowed"] + document["denied"] == 120
    # The full bucket, then the refill of one every 6 s: 20 + floor(59.5 / 6) by the last request.
    assert document["allowed"] == 29
    series = document["series"]
    assert set(series[0]) == {"t", "allowed", "denied"}
    assert sum(p["allowed"] for p in series) == document["allowed"]
    assert [p["t"] for p in series] == sorted(p["t"] for p in series)


def test_simulate_bursts_are_the_same_rate_in_groups(cli, config) -> None:
    config()
    result = cli(
        "limits", "simulate", "per_minute", "--rate", "1", "--duration", "60", "--burst", "10",
        "-o", "json",
    )  # fmt: skip
    document = json.loads(result.stdout)
    assert (document["allowed"], document["denied"]) == (5, 55)


def test_simulate_draws_a_chart(cli, config) -> None:
    config()
    result = cli("limits", "simulate", "api_generation", "--rate", "1", "--duration", "120")
    assert result.exit_code == 0
    assert "allowed" in result.stdout and "denied" in result.stdout
    assert "seconds" in result.stdout
    assert "\x1b[" not in result.stdout  # NO_COLOR: no escape codes
    assert result.stderr.strip().endswith("allowed)")


@pytest.mark.parametrize(
    "args",
    [
        ["limits", "--help"],
        ["limits", "simulate", "api_generation", "--rate", "1", "--duration", "10"],
        ["limits", "rules"],
    ],
)
def test_limits_help_rules_and_simulate_import_no_backend(config, args: list[str]) -> None:
    config()
    stdout, loaded = _loaded_backends(args)
    assert stdout.strip()
    assert loaded == []


def test_tab_completion_of_limits_imports_no_backend() -> None:
    env = {"_REVOCTL_COMPLETE": "complete_bash", "COMP_WORDS": "revoctl limits ", "COMP_CWORD": "2"}
    stdout, loaded = _loaded_backends([], env)
    assert {"rules", "test", "inspect", "reset", "simulate"} <= set(stdout.split())
    assert loaded == []


def test_health_has_rate_limiter(cli, config) -> None:
    config("memory")
    document = json.loads(cli("health", "-o", "json").stdout)
    limiter = document["services"]["rate_limiter"]
    assert limiter["status"] == "healthy" and limiter["store"] == "memory"


def test_health_rate_limiter_degraded_while_the_store_is_unreachable(
    cli, config, monkeypatch
) -> None:
    config("redis")
    monkeypatch.setenv("REVOCTL_REDIS__URL", "redis://127.0.0.1:1/0")
    document = json.loads(cli("health", "-o", "json").stdout)
    limiter = document["services"]["rate_limiter"]
    assert limiter["status"] == "degraded"
    assert "failure_mode open answers for it" in limiter["reason"]
