"""Several hosts on one machine: N ``revoctl serve`` gateways, each bound to a loopback address
of its own (127.0.0.2, .3, .4, ...: Linux routes all of 127/8 to ``lo``, no namespace needed),
sharing one Redis (the test's key prefix) and one PostgreSQL database (the test's own), in
front of the LLM stand-in, behind HAProxy (`tests.support.haproxy`) on 127.0.0.1, which reaches
them from `BALANCER_SOURCE`, the one address their ``trusted_proxies`` names.

Clients call from addresses of their own (127.0.0.5 and up, httpx's ``local_address``), so a
``per_ip`` rule sees each client as the client, whichever host serves it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.haproxy import HAProxy, free_port, stop_group

STANDIN_KEY = "sk-standin-hosts-4f1c2a"
BALANCER_SOURCE = "127.0.0.10"
HOST_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
CLIENT_ADDRESSES = tuple(f"127.0.0.{n}" for n in range(5, 10))

CONFIG = """
[database]
url = "{database}"

[redis]
url = "{redis}"

[limits]
store = "redis"
key_prefix = "{prefix}rl:"
[[limits.rules]]
name = "per-ip"
requests = {per_ip}
window_seconds = 31622400     # a leap year: nothing refills while a test counts
algorithm = "fixed_window"
scope = "per_ip"

[breakers]
store = "{breakers}"
key_prefix = "{prefix}cb:"
[breakers.services.openai_api]
failure_threshold = 1000
failure_rate_threshold = 0

[gateway]
auth = "none"
request_rule = "per-ip"
default_max_tokens = 16
trusted_proxies = ["{trusted}"]

[providers.llm]
kind = "openai"
base_url = "{openai}"
api_key = "{key}"
breaker = "openai_api"
timeout = 10

[models.gpt]
provider = "llm"
upstream = "gpt-4o-mini"
"""


@dataclass
class Host:
    """One gateway: ``revoctl serve --host ADDRESS --port PORT``."""

    name: str
    address: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL, as a host that loses its power: nothing drains, nothing closes."""
        if self.process is not None:
            stop_group(self.process, signal.SIGKILL)

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)


@dataclass
class SeveralHosts:
    """The gateways, the balancer in front of them, and the CLI on the same configuration."""

    directory: Path
    config: Path
    hosts: list[Host]
    balancer: HAProxy

    def env(self) -> dict[str, str]:
        return {**os.environ, "REVOCTL_CONFIG": str(self.config)}

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``revoctl ARGS`` in a process of its own, as an operator runs it."""
        return subprocess.run(
            [sys.executable, "-m", "revoctl", *args],
            capture_output=True, text=True, env=self.env(), timeout=60,
        )  # fmt: skip

    def cli_json(self, *args: str) -> Any:
        done = self.cli(*args, "-o", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def start(self) -> None:
        """Every gateway (all at once), each ready; then the balancer, every server up."""
        for host in self.hosts:
            with host.log.open("wb") as out:
                host.process = subprocess.Popen(
                    [sys.executable, "-m", "revoctl", "serve",
                     "--host", host.address, "--port", str(host.port)],
                    env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
        for host in self.hosts:
            wait_until_ready(host)
        self.balancer.start()

    def stop(self) -> None:
        self.balancer.stop()
        for host in self.hosts:
            host.stop()


def wait_until_ready(host: Host, timeout: float = 90) -> None:
    """Until ``host`` answers ``/health/ready`` with 200."""
    assert host.process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.process.poll() is not None:
            raise RuntimeError(f"{host.name} exited: {host.log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{host.url}/health/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{host.name} not ready after {timeout:g} s: {host.log.read_text()[-3000:]}")


@contextlib.contextmanager
def several_hosts(
    directory: Path,
    *,
    postgres_url: str,
    redis_url: str,
    prefix: str,
    openai_base_url: str,
    per_ip: int = 1_000_000,
    breakers: str = "redis",
    count: int = 3,
) -> Iterator[SeveralHosts]:
    """``count`` gateways on `HOST_ADDRESSES` behind HAProxy, migrated and running; the
    breakers on ``breakers`` (``redis`` or ``sql``: the test's PostgreSQL database); the
    ``per-ip`` rule allows ``per_ip`` requests per client. Stops everything after."""
    config = directory / "revoctl.toml"
    config.write_text(
        CONFIG.format(
            database=postgres_url,
            redis=redis_url,
            prefix=prefix,
            per_ip=per_ip,
            breakers=breakers,
            trusted=BALANCER_SOURCE,
            openai=openai_base_url,
            key=STANDIN_KEY,
        )
    )
    hosts = [
        Host(f"h{n + 2}", address, free_port(address), directory / f"serve-{address}.log")
        for n, address in enumerate(HOST_ADDRESSES[:count])
    ]
    servers = {host.name: (host.address, host.port) for host in hosts}
    fleet = SeveralHosts(directory, config, hosts, HAProxy(directory, servers, BALANCER_SOURCE))
    migrated = fleet.cli("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.stop()


def client(source: str, base_url: str, timeout: float = 30) -> httpx.Client:
    """An HTTP client whose connections come from ``source``."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=base_url, transport=transport, timeout=timeout)


def chat(http: httpx.Client, **headers: str) -> httpx.Response:
    """One chat completion of model ``gpt``."""
    body = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
    return http.post("/v1/chat/completions", json=body, headers=headers)
