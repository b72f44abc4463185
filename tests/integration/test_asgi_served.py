"""The FastAPI example served by uvicorn with two worker processes on the real Redis:
concurrent clients get exactly the rule's requests between them, the refusals are the
gateway's 429, ``X-Forwarded-For`` from the trusted proxy names the client, the two
workers close cleanly, and ``revoctl limits inspect`` (another
process) reads the bucket they filled."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import run_revoctl
from tests.support.asgi_app import WINDOW, ModelStandIn, example_config
from tests.support.haproxy import free_port, wait_for_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
LIMIT = 5  # api_generation in examples/fastapi_app/revoctl.toml
WORKERS = 2
CLIENTS = 16


def test_two_workers_share_one_exact_limit(
    tmp_path: Path, redis_url: str, redis_prefix: str, cli: Any
) -> None:
    config = example_config(tmp_path, redis_url, redis_prefix)
    assert cli("--config", str(config), "db", "migrate").exit_code == 0
    port = free_port()
    output = tmp_path / "uvicorn.log"
    with ModelStandIn() as model, output.open("w") as log:
        env = {**os.environ, "REVOCTL_CONFIG": str(config), "MODEL_URL": model.url}
        command = [sys.executable, "-m", "uvicorn", "examples.fastapi_app.app:app"]
        server = subprocess.Popen(
            [*command, "--port", str(port), "--workers", str(WORKERS), "--no-access-log"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port("127.0.0.1", port, server, output)
            _wait_for(lambda: output.read_text().count("Application startup complete") == WORKERS)
            assert len(_children(server.pid)) == WORKERS
            answers = asyncio.run(_clients(f"http://127.0.0.1:{port}"))
            proxied = httpx.get(
                f"http://127.0.0.1:{port}/whoami", headers={"x-forwarded-for": "203.0.113.9"}
            )
        finally:
            server.send_signal(signal.SIGTERM)
            code = server.wait(30)
    text = output.read_text()
    assert code == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert text.count("Application shutdown complete") == WORKERS, text[-3000:]
    assert proxied.json() == {"client": "203.0.113.9"}  # 127.0.0.1 is a trusted proxy
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] * LIMIT + [429] * (CLIENTS - LIMIT)
    refused = [(body, headers) for status, body, headers in answers if status == 429]
    for body, headers in refused:
        assert body["error"]["code"] == "rate_limit_exceeded"
        assert body["error"]["type"] == "requests"
        assert int(headers["retry-after"]) >= 1
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert headers["ratelimit-policy"] == f'"requests";q=5;w={WINDOW}'
    assert model.calls == LIMIT  # a refusal never reaches the model
    shown = run_revoctl(
        ["--config", str(config), "limits", "inspect", "api_generation", "-k", "dave", "-o", "json"]
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["remaining"] == 0


async def _clients(base: str) -> list[tuple[int, dict[str, Any], dict[str, str]]]:
    """CLIENTS requests of the user dave at once, each on a connection of its own."""

    async def one() -> tuple[int, dict[str, Any], dict[str, str]]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            response = await http.post(
                "/generate", json={"prompt": "hello"}, headers={"x-revoctl-user": "dave"}
            )
            return response.status_code, response.json(), dict(response.headers)

    return await asyncio.gather(*(one() for _ in range(CLIENTS)))


def _children(pid: int) -> list[int]:
    """uvicorn's workers under ``pid``: its children started by multiprocessing's spawn_main
    (its resource tracker is a child too)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError):
            fields = dict(
                line.split(":\t", 1) for line in (proc / "status").read_text().splitlines()
            )
            if int(fields["PPid"]) == pid and b"spawn_main" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
    return found


def _wait_for(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the workers did not start")
        time.sleep(0.1)
