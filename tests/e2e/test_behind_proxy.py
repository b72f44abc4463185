"""``revoctl serve`` behind a real HAProxy (Debian's package, ``option forwardfor``), all on
loopback, configured as the README's example: clients from 127.0.0.2 and 127.0.0.3 (Linux
routes all of 127/8 to ``lo``) call through the balancer, which reaches the gateway from
127.0.0.5, the one trusted proxy.

Each client gets its own ``per_ip`` bucket, its own ``request_logs.client_ip`` and its own
``client`` in the access log; an ``X-Forwarded-For`` a client writes itself is believed
neither through the balancer (it appends the real address) nor straight to the gateway, not
even from 127.0.0.1, which uvicorn alone would have believed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.haproxy import HAProxy, free_port, stop_group, wait_for_port
from tests.support.llm_standin import LLMStandIn

pytestmark = pytest.mark.slow

BALANCER_SOURCE = "127.0.0.5"
GATEWAY_LOG = "serve.log"
REQUESTS_PER_IP = 2

CONFIG = """
[database]
url = "sqlite+aiosqlite:///{database}"

[limits]
store = "sql"
[[limits.rules]]
name = "per-ip"
requests = {requests}
window_seconds = 31622400     # a leap year: nothing refills while the test counts
algorithm = "fixed_window"
scope = "per_ip"

[gateway]
auth = "none"
request_rule = "per-ip"
default_max_tokens = 16
trusted_proxies = ["{trusted}"]

[providers.llm]
kind = "openai"
base_url = "{openai}"
api_key = "sk-standin"

[models.gpt]
provider = "llm"
upstream = "gpt-4o-mini"
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """The gateway and HAProxy in front of it (``tmp_path``: the configuration, the database,
    both servers' output); yields the balancer's port and the gateway's."""
    with LLMStandIn(api_key="sk-standin") as llm:
        config = tmp_path / "revoctl.toml"
        config.write_text(
            CONFIG.format(
                database=tmp_path / "gateway.db",
                requests=REQUESTS_PER_IP,
                trusted=BALANCER_SOURCE,
                openai=llm.openai_base_url,
            )
        )
        env = {**os.environ, "REVOCTL_CONFIG": str(config)}
        revoctl_json(tmp_path, "db", "migrate")
        back = free_port()
        balancer = HAProxy(tmp_path, {"revoctl": ("127.0.0.1", back)}, BALANCER_SOURCE)
        gateway_log = tmp_path / GATEWAY_LOG
        with gateway_log.open("w") as out:
            gateway = subprocess.Popen(
                [sys.executable, "-m", "revoctl", "serve", "--port", str(back)],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_for_port("127.0.0.1", back, gateway, gateway_log)
            balancer.start()
            yield balancer.port, back
        finally:
            balancer.stop()
            stop_group(gateway)


def ask(port: int, source: str, **headers: str) -> int:
    """One chat completion from ``source`` to ``port``; its status."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=30) as client:
        answered = client.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
            headers=headers,
        )
    return answered.status_code


def revoctl_json(tmp_path: Path, *args: str) -> Any:
    """``revoctl ARGS -o json`` on the test's configuration, as an operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "revoctl", *args, "-o", "json"],
        env={**os.environ, "REVOCTL_CONFIG": str(tmp_path / "revoctl.toml")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def logged_clients(tmp_path: Path, count: int) -> Counter[str]:
    """The ``client_ip`` of each ``request_logs`` row, once there are ``count`` rows (the
    usage writer flushes every second)."""
    deadline = time.monotonic() + 30
    while True:
        with contextlib.closing(sqlite3.connect(tmp_path / "gateway.db")) as db:
            rows = db.execute("SELECT client_ip FROM request_logs").fetchall()
        if len(rows) >= count or time.monotonic() > deadline:
            return Counter(client for (client,) in rows)
        time.sleep(0.2)


def test_clients_behind_a_trusted_balancer_get_their_own_buckets(
    served: tuple[int, int], tmp_path: Path
) -> None:
    front, back = served

    # Two clients through the balancer: a bucket each, each spent on its own.
    assert [ask(front, "127.0.0.2") for _ in range(3)] == [200, 200, 429]
    assert [ask(front, "127.0.0.3") for _ in range(2)] == [200, 200]
    # A hop the client invents is to the left of the one the balancer appends: no escape.
    assert ask(front, "127.0.0.2", **{"x-forwarded-for": "198.51.100.1"}) == 429
    # The balancer removes the header it does not write.
    assert ask(front, "127.0.0.3", forwarded="for=198.51.100.2") == 429

    # Straight to the gateway, a client's own header is ignored: 127.0.0.4 is no proxy of
    # ours, and neither is 127.0.0.1, whom uvicorn's default (turned off) would believe.
    assert ask(back, "127.0.0.4", **{"x-forwarded-for": "198.51.100.3"}) == 200
    assert ask(back, "127.0.0.1", **{"x-forwarded-for": "198.51.100.4"}) == 200

    inspected = revoctl_json(tmp_path, "limits", "inspect", "per-ip")
    remaining = {state["key"]: state["remaining"] for state in inspected}
    assert remaining == {"127.0.0.2": 0, "127.0.0.3": 0, "127.0.0.4": 1, "127.0.0.1": 1}

    expected = Counter({"127.0.0.2": 4, "127.0.0.3": 3, "127.0.0.4": 1, "127.0.0.1": 1})
    assert logged_clients(tmp_path, expected.total()) == expected
    lines = (tmp_path / GATEWAY_LOG).read_text().splitlines()
    access = [json.loads(line) for line in lines if line.startswith("{")]
    chats = Counter(e["client"] for e in access if e.get("path") == "/v1/chat/completions")
    assert chats == expected
