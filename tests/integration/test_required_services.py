"""The server fixtures: real servers are used, and "unreachable" skips, or fails under CI.

Runs a small suite in a child pytest with this project's conftest, against the real
PostgreSQL and Redis and against addresses where nothing listens.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

REPO = Path(__file__).parents[2]

PROBE = """
import asyncio

import asyncpg
import redis


def test_postgres(postgres_url):
    async def roundtrip():
        conn = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            await conn.execute("CREATE TABLE t (x int)")
            await conn.execute("INSERT INTO t VALUES (41)")
            return await conn.fetchval("SELECT x + 1 FROM t")
        finally:
            await conn.close()

    assert asyncio.run(roundtrip()) == 42


def test_redis(redis_url, redis_prefix):
    client = redis.Redis.from_url(redis_url)
    client.set(f"{redis_prefix}k", "v")
    assert client.get(f"{redis_prefix}k") == b"v"
    client.close()
"""


def run_probe(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    suite = tmp_path / "suite"
    suite.mkdir(exist_ok=True)
    shutil.copy(REPO / "tests" / "conftest.py", suite / "conftest.py")
    (suite / "test_probe.py").write_text(PROBE)
    child_env = {k: v for k, v in os.environ.items() if k != "REVOCTL_REQUIRE_SERVICES"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(suite),
            "-c",
            str(REPO / "pyproject.toml"),
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**child_env, **env},
        cwd=suite,
    )


def test_real_servers_are_used_and_cleaned_up(tmp_path: Path, redis_url: str) -> None:
    import redis

    result = run_probe(tmp_path)
    assert "2 passed" in result.stdout, result.stdout + result.stderr
    client = redis.Redis.from_url(redis_url)
    assert list(client.scan_iter(match="revoctl-test-*")) == []
    client.close()


def test_unreachable_servers_skip_with_the_reason(tmp_path: Path) -> None:
    result = run_probe(
        tmp_path,
        REVOCTL_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:1/postgres",
        REVOCTL_TEST_REDIS_URL="redis://127.0.0.1:1/0",
    )
    assert result.returncode == 0, result.stdout
    assert "2 skipped" in result.stdout
    assert "PostgreSQL at postgresql://postgres@127.0.0.1:1/postgres unreachable" in result.stdout
    assert "Redis at redis://127.0.0.1:1/0 unreachable" in result.stdout


def test_unreachable_servers_fail_when_required(tmp_path: Path) -> None:
    result = run_probe(
        tmp_path,
        REVOCTL_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:1/postgres",
        REVOCTL_TEST_REDIS_URL="redis://127.0.0.1:1/0",
        REVOCTL_REQUIRE_SERVICES="1",
    )
    assert result.returncode == 1
    assert "2 errors" in result.stdout or "2 failed" in result.stdout, result.stdout
    assert "REVOCTL_REQUIRE_SERVICES=1 makes this a failure" in result.stdout
