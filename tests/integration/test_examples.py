"""Every file in examples/ runs as its header says, in a fresh REVOCTL_HOME.

- revoctl.toml: the commands in its header, run as written (from a directory holding
  ``examples/``), then ``serve`` in front of the LLM stand-in, answering a gateway key;
- production.toml: validates with no server, and names exactly the secrets it says;
- ci-check.sh: green on a migrated embedded state; on each broken state, non-zero with
  revoctl's exit code and the line of the check that failed;
- app.py: end to end on the embedded defaults, twice (state shared across processes), then
  refused by a breaker tripped from the CLI.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REQUIRE_SERVICES, run_revoctl
from tests.support.fleet import free_port
from tests.support.llm_standin import LLMStandIn

EXAMPLES = Path(__file__).parents[2] / "examples"
DEV, PRODUCTION = EXAMPLES / "revoctl.toml", EXAMPLES / "production.toml"
CI_CHECK, APP = EXAMPLES / "ci-check.sh", EXAMPLES / "app.py"
BIN = Path(sys.executable).parent
CHECKS = ["config", "database", "migrations", "breakers", "secrets", "limits", "health"]


def with_venv(**extra: str) -> dict[str, str]:
    """This environment with the project's ``revoctl`` first on PATH."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}


def header_commands(path: Path) -> list[str]:
    """The commands of a file's opening comment: its ``#   command  # note`` lines."""
    commands = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        found = re.match(r"#   (\S.*?)(?:\s{2,}#.*)?$", line)
        if found:
            commands.append(found.group(1))
    return commands


# ---------------------------------------------------------------- the development config


@pytest.fixture
def llm() -> Iterator[LLMStandIn]:
    # The header stores "unused" as the provider key: the stand-in accepts exactly that.
    with LLMStandIn(api_key="unused", reply_tokens=5) as standin:
        yield standin


def test_the_dev_config_header_runs_and_serve_answers(tmp_path: Path, llm: LLMStandIn) -> None:
    commands = header_commands(DEV)
    *steps, serve = commands
    assert steps[0] == "cp examples/revoctl.toml ./revoctl.toml"
    assert serve == "revoctl serve --port 8000"
    work = tmp_path / "project"
    shutil.copytree(EXAMPLES, work / "examples")
    outputs = {}
    for step in steps:
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", step],
            cwd=work,
            env=with_venv(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{step}: {done.stderr}"
        outputs[step] = done.stdout
    key = outputs["revoctl keys create me"].strip()
    assert key.startswith("rvk_")

    port = free_port()
    server = subprocess.Popen(
        [*shlex.split(serve.replace("8000", str(port)))],
        cwd=work,
        env=with_venv(REVOCTL_PROVIDERS__LOCAL__BASE_URL=llm.openai_base_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(server, base)
        auth = {"authorization": f"Bearer {key}"}
        body = {"model": "llama", "messages": [{"role": "user", "content": "hi there"}]}
        answer = httpx.post(f"{base}/v1/chat/completions", json=body, headers=auth, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == "llama"
        assert answer.headers["x-ratelimit-limit-requests"] == "60"  # requests_per_minute
        assert answer.headers["x-ratelimit-limit-tokens"] == "20000"  # tokens_per_minute
        upstream = llm.requests[-1]
        assert (upstream.model, upstream.api_key) == ("llama3.2:3b", "unused")
        models = httpx.get(f"{base}/v1/models", headers=auth, timeout=30).json()
        assert {model["id"] for model in models["data"]} == {"llama", "qwen"}
        assert httpx.post(f"{base}/v1/chat/completions", json=body, timeout=30).status_code == 401
        metrics = httpx.get(f"{base}/metrics", timeout=30).text
        assert 'revoctl_breaker_state{breaker="openai_api"}' in metrics
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        _, err = server.communicate(timeout=60)
    # uvicorn re-raises the SIGTERM it caught once it has shut down gracefully
    assert server.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err, err


def wait_until_ready(server: subprocess.Popen[str], base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"serve exited: {server.communicate()[1][-3000:]}")
        try:
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not become ready within 60 s")


# ---------------------------------------------------------------- the production config


@pytest.mark.parametrize("profile", [[], ["--profile", "staging"]], ids=["prod", "staging"])
def test_the_production_config_validates_without_any_server(profile: list[str]) -> None:
    done = run_revoctl(["--config", str(PRODUCTION), *profile, "config", "show", "-o", "json"])
    assert done.returncode == 0, done.stderr
    settings = {item["key"]: item["value"] for item in json.loads(done.stdout)["settings"]}
    assert settings["secrets.provider"] == "azure_key_vault"
    assert settings["secrets.fallback"] == "local"
    assert settings["database.url"].startswith(
        "postgresql+asyncpg://gateway:${secret:db-password}@"
    )
    assert settings["redis.url"].startswith("rediss://:${secret:redis-password}@")
    assert (settings["limits.store"], settings["breakers.store"]) == ("redis", "redis")
    for provider in ("openai", "anthropic", "deepseek"):
        assert settings[f"providers.{provider}.api_key"] == f"${{secret:{provider}-api-key}}"
    assert settings["models.gpt-4o-mini.fallbacks"] == ["claude-haiku", "deepseek-chat"]
    if profile:
        assert "platform-staging" in settings["database.url"]
        assert settings["database.pool_size"] == 5


def test_the_production_config_names_the_secrets_its_header_lists() -> None:
    text = PRODUCTION.read_text()
    listed = re.search(r"The secrets it names: ([^.]+)\.", text.replace("\n# ", " "))
    assert listed is not None
    settings = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    referenced = set(re.findall(r"\$\{secret:([^}]+)\}", settings))
    assert set(listed.group(1).split(", ")) == referenced


# ---------------------------------------------------------------- the CI check script


@pytest.fixture
def ci_state(revoctl_home: Path) -> dict[str, str]:
    """The environment the script runs in: the dev config, a fresh home, revoctl on PATH."""
    if shutil.which("jq") is None:
        reason = "jq is not installed (apt-get install jq)"
        if REQUIRE_SERVICES:
            pytest.fail(f"{reason}; REVOCTL_REQUIRE_SERVICES=1 makes this a failure")
        pytest.skip(reason)
    return with_venv(REVOCTL_CONFIG=str(DEV))


def ci_check(env: dict[str, str], **extra: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [str(CI_CHECK)], env={**env, **extra}, capture_output=True, text=True, timeout=180
    )
    return done.returncode, done.stdout.splitlines()


def revoctl(env: dict[str, str], *args: str, stdin: str | None = None) -> None:
    done = subprocess.run(
        ["revoctl", *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_ci_check_fails_on_a_fresh_state_then_passes_once_migrated(
    ci_state: dict[str, str],
) -> None:
    code, lines = ci_check(ci_state)
    assert code == 1
    assert re.fullmatch(
        r"FAIL  migrations \d+ pending \(at none, head \w+\): run 'revoctl db migrate'", lines[-1]
    ), lines
    revoctl(ci_state, "db", "migrate")
    code, lines = ci_check(ci_state)
    assert code == 0, lines
    assert [line.split()[:2] for line in lines] == [["ok", check] for check in CHECKS]
    assert lines[-2].endswith("3 rules answered") and lines[-1].endswith("healthy")
    # the smoke checks gave back what they took
    inspected = run_revoctl(
        ["limits", "inspect", "requests_per_minute", "-o", "json"], env=ci_state
    )
    assert json.loads(inspected.stdout) == []


@pytest.mark.parametrize(
    ("breakage", "code", "line"),
    [
        ("typo", 2, "FAIL  config     exit 2, usage or configuration error: invalid configuration"),
        ("database", 4, "FAIL  database   exit 4, back end unavailable: cannot reach the database"),
        ("trip", 1, "FAIL  breakers   forced open: openai_api (incident 42)"),
        ("old-secret", 1, "FAIL  secrets    unchanged for over 0m: local-llm-key"),
        ("limit", 1, "FAIL  limits     requests_per_minute denied the first check of key ci-check"),
    ],
)
def test_ci_check_stops_at_the_check_that_fails(
    ci_state: dict[str, str], breakage: str, code: int, line: str, tmp_path: Path
) -> None:
    revoctl(ci_state, "db", "migrate")
    extra: dict[str, str] = {}
    if breakage == "typo":
        extra = {"REVOCTL_LIMITS__STOER": "redis"}
    elif breakage == "database":
        extra = {"REVOCTL_DATABASE__URL": "postgresql+asyncpg://ci@127.0.0.1:1/nowhere"}
    elif breakage == "trip":
        revoctl(ci_state, "breakers", "trip", "openai_api", "--reason", "incident 42")
    elif breakage == "old-secret":
        revoctl(ci_state, "secrets", "set", "local-llm-key", stdin="unused")
        extra = {"MAX_SECRET_AGE": "0m"}
    elif breakage == "limit":
        # The rule's fixed window made a day long: the exhausted key stays denied however
        # long the checks before it take (a minute's window could roll over meanwhile).
        config = DEV.read_text()
        assert config.count("requests = 60\nwindow_seconds = 60\n") == 1
        daily = tmp_path / "revoctl.toml"
        daily.write_text(
            config.replace(
                "requests = 60\nwindow_seconds = 60\n", "requests = 60\nwindow_seconds = 86400\n"
            )
        )
        ci_state = {**ci_state, "REVOCTL_CONFIG": str(daily)}
        args = ("limits", "test", "requests_per_minute", "--key", "ci-check", "--count", "60")
        revoctl(ci_state, *args)
    status, lines = ci_check(ci_state, **extra)
    assert status == code, lines
    assert lines[-1].startswith(line), lines
    failed = CHECKS.index(lines[-1].split()[1])
    assert [entry.split()[:2] for entry in lines[:-1]] == [["ok", c] for c in CHECKS[:failed]]


# ---------------------------------------------------------------- the app


def run_app(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(APP), *args], capture_output=True, text=True, timeout=120
    )


def test_the_app_runs_on_the_embedded_defaults_and_follows_a_trip(revoctl_home: Path) -> None:
    first = run_app()
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert re.fullmatch(r"database: schema at \w+ \(\d+ applied now\)", lines[0])
    assert lines[1] == "secret local-llm-key: none yet, stored a placeholder"
    assert "api_generation: alice allowed, 29 of 30 left" in lines
    assert "model: 'guard revoctl does what'" in lines
    assert any(
        line.startswith("tokens_per_minute: charged 68, used 4, refunded 64") for line in lines
    )
    assert lines[-1] == "usage: 1 model call(s) recorded for alice"
    assert "placeholder-for-a-local-server" not in first.stdout + first.stderr

    second = run_app()  # a new process: the limits and the usage rows are in the database
    assert second.returncode == 0, second.stderr
    assert "api_generation: alice allowed, 28 of 30 left" in second.stdout
    assert second.stdout.splitlines()[-1] == "usage: 2 model call(s) recorded for alice"

    tripped = run_revoctl(
        ["--config", str(DEV), "breakers", "trip", "openai_api", "--reason", "drill"]
    )
    assert tripped.returncode == 0, tripped.stderr
    refused = run_app("bob")
    assert refused.returncode == 1, refused.stderr
    assert refused.stdout.splitlines()[-1] == "breaker openai_api: forced_open (drill)"
