"""Shared fixtures: an isolated revoctl home, the CLI runner, and the real servers.

Tests that need PostgreSQL or Redis use the `postgres_url` / `redis_url`
fixtures. When a server is unreachable they skip with the reason, unless
``REVOCTL_REQUIRE_SERVICES=1`` (set by ``.ci/run``), which turns the skip
into a failure.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from revoctl.cli import app

POSTGRES_ADMIN_URL = os.environ.get(
    "REVOCTL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_TEST_URL = os.environ.get("REVOCTL_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
REQUIRE_SERVICES = os.environ.get("REVOCTL_REQUIRE_SERVICES") == "1"


def unavailable(what: str, exc: BaseException) -> None:
    """Skip (or, under CI, fail) a test whose server cannot be reached."""
    reason = f"{what} unreachable ({type(exc).__name__}: {exc})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason}; REVOCTL_REQUIRE_SERVICES=1 makes this a failure", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def revoctl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own REVOCTL_HOME and XDG dirs, no stray REVOCTL_* settings, no colour."""
    for name in list(os.environ):
        if name.startswith("REVOCTL_") and not name.startswith(
            ("REVOCTL_TEST_", "REVOCTL_REQUIRE")
        ):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("REVOCTL_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture(autouse=True)
def isolated_logging_and_redaction() -> Iterator[None]:
    """In-process CLI runs install a root log handler and register secret values with the
    process-wide redactor; both are undone after each test, so that no test sees another's
    (a value registered elsewhere would mask words in this test's log records)."""
    from revoctl.core import redaction

    root, ours = logging.getLogger(), logging.getLogger("revoctl")
    handlers, level, our_level = list(root.handlers), root.level, ours.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    ours.setLevel(our_level)
    redaction._redactor._values.clear()
    redaction._redactor._pattern = None


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli() -> object:
    """Run ``revoctl ARGS`` in-process; returns exit code, stdout and stderr apart."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> CliResult:
        result = runner.invoke(app, list(args), input=input, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return invoke


def run_revoctl(
    args: Sequence[str],
    *,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m revoctl`` in a child process (for exit codes, timing, several processes)."""
    return subprocess.run(
        [sys.executable, "-m", "revoctl", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (SQLAlchemy URL), dropped afterwards."""
    import asyncpg

    name = f"revoctl_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        unavailable(f"PostgreSQL at {POSTGRES_ADMIN_URL}", exc)
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    yield f"{base}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis database, with a unique key prefix in ``REVOCTL_TEST_REDIS_PREFIX``-style use.

    Yields the URL; every key the test writes under its prefix (``redis_prefix``)
    is deleted afterwards.
    """
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {REDIS_TEST_URL}", exc)
    yield REDIS_TEST_URL
    client.close()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix unique to this test; its keys are deleted afterwards."""
    import redis

    prefix = f"revoctl-test-{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
