"""A gateway fleet for end-to-end tests: ``revoctl serve --workers N`` in real processes, on
PostgreSQL and Redis, in front of two LLM stand-ins (an OpenAI-style upstream, each with its
own key and faults), with the CLI driving the same state."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.llm_standin import LLMStandIn

OPENAI_KEY = "sk-openai-canary-51c9e0"
ANTHROPIC_KEY = "sk-anthropic-canary-7a2d44"

CONFIG = """
[database]
url = "{database}"

[redis]
url = "{redis}"

[limits]
store = "redis"
key_prefix = "{prefix}rl:"
[[limits.rules]]
name = "rpm"
requests = {rpm}
window_seconds = 31622400     # a leap year: no window ends and nothing refills while a test counts
algorithm = "fixed_window"
scope = "per_api_key"
[[limits.rules]]
name = "tpm"
requests = {tpm}
window_seconds = 31622400
algorithm = "fixed_window"
scope = "per_api_key"

[breakers]
store = "redis"
key_prefix = "{prefix}cb:"
poll_interval = 0.25
report_interval = 0.5
[breakers.services.openai_api]
failure_threshold = 3
recovery_timeout = 600
[breakers.services.anthropic_api]
failure_threshold = 1000
failure_rate_threshold = 0

[gateway]
auth = "keys"
request_rule = "rpm"
token_rule = "tpm"
default_max_tokens = 64
keys_refresh_seconds = 0.25
{drain}

[providers.llm]
kind = "openai"
base_url = "{openai}"
api_key = "${{secret:openai-api-key}}"
breaker = "openai_api"
timeout = 10

[providers.claude]
kind = "anthropic"
base_url = "{anthropic}"
api_key = "${{secret:anthropic-api-key}}"
breaker = "anthropic_api"
timeout = 10

[models.gpt]
provider = "llm"
upstream = "gpt-4o-mini"
input_cost_per_1k = 0.5
output_cost_per_1k = 1.5
fallbacks = ["sonnet"]

[models.sonnet]
provider = "claude"
upstream = "claude-sonnet"
input_cost_per_1k = 3.0
output_cost_per_1k = 15.0
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Fleet:
    """The served gateway and the CLI, sharing one configuration and one state."""

    config: Path
    home: Path
    openai: LLMStandIn
    anthropic: LLMStandIn
    workers: int
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    log: Path | None = None
    """Where the server writes (stdout and stderr): a file, not a pipe, so that a busy run
    never fills a pipe nobody reads and blocks the workers on their access log."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "REVOCTL_HOME": str(self.home), "REVOCTL_CONFIG": str(self.config)}

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """``revoctl ARGS`` in a process of its own, as an operator runs it."""
        return subprocess.run(
            [sys.executable, "-m", "revoctl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=60,
        )

    def cli_json(self, *args: str) -> Any:
        done = self.cli(*args, "-o", "json")
        assert done.returncode in (0, 1), done.stderr
        return json.loads(done.stdout)

    def start(self) -> None:
        self.log = self.config.parent / f"serve-{self.port}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "revoctl", "serve", "--port", str(self.port),
                 "--workers", str(self.workers)],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: {self.output()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    if self.workers > 1:  # one worker is the serving process itself
                        self.wait_for_workers()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the gateway did not become ready within 60 s")

    def wait_for_workers(self, timeout: float = 30) -> list[int]:
        """The worker pids, once every worker answers (each reports its own pid in /metrics)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            if len(pids) >= self.workers:
                return pids
            time.sleep(0.2)
        raise RuntimeError(f"{self.workers} workers did not start")

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        found = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout.split()
        pids = []
        for pid in map(int, found):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"multiprocessing" in cmdline or b"spawn" in cmdline:
                pids.append(pid)
        return pids

    def output(self) -> str:
        """What the server has written so far."""
        return self.log.read_text() if self.log is not None else ""

    def stop(self) -> str:
        """SIGTERM, as an orchestrator stops a pod; returns what the server wrote."""
        if self.process is None:
            return ""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        return self.output()

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {key}"}, timeout=30
        )

    def new_key(self, name: str, *options: str) -> str:
        created = self.cli("keys", "create", name, *options)
        assert created.returncode == 0, created.stderr
        return created.stdout.strip()


def build_fleet(
    tmp_path: Path,
    *,
    postgres_url: str,
    redis_url: str,
    prefix: str,
    openai: LLMStandIn,
    anthropic: LLMStandIn,
    workers: int = 2,
    rpm: int = 1000,
    tpm: int = 1_000_000,
    drain_seconds: float | None = None,
) -> Fleet:
    """Configuration, secrets, migrations and a fleet ready to start (``drain_seconds``:
    ``[gateway] drain_seconds``, else its default)."""
    config = tmp_path / "revoctl.toml"
    config.write_text(
        CONFIG.format(
            database=postgres_url,
            redis=redis_url,
            prefix=prefix,
            openai=openai.openai_base_url,
            anthropic=anthropic.url,
            rpm=rpm,
            tpm=tpm,
            drain="" if drain_seconds is None else f"drain_seconds = {drain_seconds}",
        )
    )
    fleet = Fleet(
        config=config,
        home=tmp_path / "home",
        openai=openai,
        anthropic=anthropic,
        workers=workers,
    )
    for name, value in (("openai-api-key", OPENAI_KEY), ("anthropic-api-key", ANTHROPIC_KEY)):
        stored = fleet.cli("secrets", "set", name, stdin=value)
        assert stored.returncode == 0, stored.stderr
    migrated = fleet.cli("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    return fleet


def chat(client: httpx.Client, **body: Any) -> httpx.Response:
    payload = {"model": "gpt", "messages": [{"role": "user", "content": "hello there"}], **body}
    return client.post("/v1/chat/completions", json=payload)
