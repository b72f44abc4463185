"""Every file in examples/ runs as its header says, in a fresh REVOCTL_HOME.

- revoctl.toml: the commands in its header, run as written (from a directory holding
  ``examples/``), then ``serve`` in front of the LLM stand-in, answering a gateway key;
- production.toml: validates with no server, and names exactly the secrets it says.
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

from tests.conftest import run_revoctl
from tests.support.fleet import free_port
from tests.support.llm_standin import LLMStandIn

EXAMPLES = Path(__file__).parents[2] / "examples"
DEV, PRODUCTION = EXAMPLES / "revoctl.toml", EXAMPLES / "production.toml"
BIN = Path(sys.executable).parent


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
