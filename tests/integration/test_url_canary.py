"""A secret referenced from the database URL never reaches stdout, stderr or disk.

The reference sits in each part of the URL in turn (user, password, host, database,
query). The commands that describe or probe the database run in fresh processes, in
every output format and with -v / -vv, against a server that refuses the connection
and against the real PostgreSQL, which echoes the user and database names back in
its errors. Only the secret store may hold the value.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from tests.conftest import POSTGRES_ADMIN_URL

pytestmark = pytest.mark.postgres

PG_HOST = POSTGRES_ADMIN_URL.split("@", 1)[1].split("/", 1)[0]

TEMPLATES = {
    "user": "postgresql://${secret:db-canary}@127.0.0.1:1/x",
    "password": "postgresql://u:${secret:db-canary}@127.0.0.1:1/x",
    "host": "postgresql://u@${secret:db-canary}:5432/x",
    "database": "postgresql://u@127.0.0.1:1/${secret:db-canary}",
    "query": "postgresql://u@127.0.0.1:1/x?password=${secret:db-canary}",
    "user, reachable": "postgresql://${secret:db-canary}@" + PG_HOST + "/postgres",
    "database, reachable": "postgresql://postgres@" + PG_HOST + "/${secret:db-canary}",
}

COMMANDS = [
    ("health", "-o", "json"),
    ("health", "-o", "yaml"),
    ("health",),
    ("-v", "health", "-o", "json"),
    ("db", "health", "-o", "json"),
    ("-vv", "db", "health"),
    ("db", "ping", "-o", "json"),
    ("-v", "db", "ping"),
    ("db", "ping", "-o", "yaml"),
    ("config", "show"),
    ("config", "show", "-o", "json"),
    ("-vv", "config", "show", "-o", "yaml"),
]


def forms(value: str) -> list[str]:
    return [value, quote(value, safe=""), quote_plus(value), value.replace("-", " ")]


@pytest.mark.slow
@pytest.mark.parametrize("part", list(TEMPLATES))
def test_a_referenced_secret_never_leaks_from_the_url(part: str, revoctl_home: Path) -> None:
    canary = "canary-" + secrets.token_hex(8)
    env = {
        **os.environ,
        "REVOCTL_DATABASE__URL": TEMPLATES[part],
        "REVOCTL_DATABASE__RETRY_ATTEMPTS": "0",
        "REVOCTL_DATABASE__CONNECT_TIMEOUT": "3",
        "REVOCTL_DATABASE__HEALTH_TIMEOUT": "3",
    }
    stored = subprocess.run(
        [sys.executable, "-m", "revoctl", "secrets", "set", "db-canary"],
        input=canary,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert stored.returncode == 0, stored.stderr
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "revoctl", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for args in COMMANDS
    ]
    for args, run in zip(COMMANDS, runs, strict=True):
        stdout, stderr = run.communicate(timeout=60)
        for form in forms(canary):
            assert form not in stdout, f"{part}: the value on stdout of {args}"
            assert form not in stderr, f"{part}: the value on stderr of {args}"
        if args[-1] != "show" and "show" not in args:
            assert "${secret:db-canary}" in stdout + stderr or run.returncode == 0, (
                f"{part}: {args} does not name the reference: {stdout}{stderr}"
            )
    for path in revoctl_home.rglob("*"):
        if path.is_file() and path.name != "secrets.json":
            content = path.read_bytes()
            assert canary.encode() not in content, f"{part}: the value on disk in {path}"


def test_health_json_shows_the_reference_in_the_query_never_the_value(cli, monkeypatch) -> None:
    canary = "canary-" + secrets.token_hex(8)
    assert cli("secrets", "set", "pg-pw", input=canary).exit_code == 0
    monkeypatch.setenv(
        "REVOCTL_DATABASE__URL", "postgresql+asyncpg://u@127.0.0.1:1/x?password=${secret:pg-pw}"
    )
    monkeypatch.setenv("REVOCTL_DATABASE__RETRY_ATTEMPTS", "0")
    for args in (("health", "-o", "json"), ("health",), ("db", "health", "-o", "json")):
        result = cli(*args)
        assert canary not in result.stdout + result.stderr
        assert "password=${secret:pg-pw}" in result.stdout, args
