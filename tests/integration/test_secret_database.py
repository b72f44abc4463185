"""Secrets and the database: ``${secret:NAME}`` in the database URL, and the rotation audit log
(migration 0002)."""

from __future__ import annotations

import json
import secrets
import sqlite3
from pathlib import Path

import pytest

from revoctl.core.redaction import MASK, redact
from revoctl.core.secrets.stores.file import STORE_FILE_NAME, FileSecretStore
from revoctl.core.services import load_services


@pytest.mark.postgres
def test_a_secret_reference_in_the_database_url(
    cli, postgres_url: str, monkeypatch: pytest.MonkeyPatch
):
    password = "pg-secret-password-123"
    assert cli("secrets", "set", "db-password", input=password).exit_code == 0
    url = postgres_url.replace("postgres@", "postgres:${secret:db-password}@", 1)
    assert "${secret:db-password}" in url
    monkeypatch.setenv("REVOCTL_DATABASE__URL", url)

    ping = cli("db", "ping", "-o", "json")
    assert ping.exit_code == 0, ping.stderr
    assert json.loads(ping.stdout)["ok"] is True
    assert password not in ping.stdout + ping.stderr
    assert redact(f"postgresql://postgres:{password}@h/db") == f"postgresql://postgres:{MASK}@h/db"


@pytest.mark.postgres
async def test_url_characters_in_a_referenced_password_stay_in_the_password(
    revoctl_home: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
):
    """Pasted into the URL as is, "@pg/x#1" would make the URL point at host "pg"."""
    password = "Tr0ub4dor@pg/x#1%41:?"
    url = postgres_url.replace("postgres@", "postgres:${secret:db-password}@", 1)
    monkeypatch.setenv("REVOCTL_DATABASE__URL", url)
    await FileSecretStore(revoctl_home / STORE_FILE_NAME).set("db-password", password)
    async with load_services() as services:
        assert (await services.db.ping())["ok"] is True  # reached 127.0.0.1, not "pg"
        resolved = services.db._url
        assert resolved is not None
        assert (resolved.host, resolved.password) == ("127.0.0.1", password)
        assert resolved.database == postgres_url.rsplit("/", 1)[1]
        assert "Tr0ub4dor" not in services.db.describe_url()


@pytest.mark.postgres
async def test_load_services_resolves_the_reference(
    revoctl_home: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
):
    password = "pg-library-password-" + secrets.token_hex(8)
    url = postgres_url.replace("postgres@", "postgres:${secret:db-password}@", 1)
    monkeypatch.setenv("REVOCTL_DATABASE__URL", url)
    # Written by the store itself, so nothing has registered the value for redaction yet.
    await FileSecretStore(revoctl_home / STORE_FILE_NAME).set("db-password", password)
    assert redact(password) == password
    async with load_services() as services:
        assert (await services.db.ping())["ok"] is True
        assert password not in services.db.describe_url()
        assert redact(password) == MASK
        health = await services.health_check()
    assert health["services"]["secrets"]["status"] == "healthy"


@pytest.mark.postgres
def test_on_postgresql_rotation_is_audited_once_the_database_is_migrated(
    cli, postgres_url: str, monkeypatch: pytest.MonkeyPatch
):
    """PostgreSQL is migrated by an explicit deploy step: until then a change stands and
    says it was not audited, and why."""
    monkeypatch.setenv("REVOCTL_DATABASE__URL", postgres_url)
    cli("secrets", "set", "api-key", input="value-1")
    unaudited = cli("secrets", "rotate", "api-key", "-o", "json")
    assert unaudited.exit_code == 0
    assert json.loads(unaudited.stdout)["audited"] is False
    assert "was not recorded in the audit log" in unaudited.stderr
    assert "the database is not migrated (run 'revoctl db migrate')" in unaudited.stderr
    assert "INSERT INTO" not in unaudited.stderr

    assert cli("db", "migrate").exit_code == 0
    rotated = cli("secrets", "rotate", "api-key", "-o", "json", input="")
    assert json.loads(rotated.stdout)["audited"] is True and rotated.stderr == ""


def test_on_the_embedded_database_every_change_is_audited(cli, revoctl_home: Path):
    """SQLite is migrated on first use: a new user's first change is audited."""
    assert cli("secrets", "set", "api-key", input="value-1").exit_code == 0
    rotated = cli("secrets", "rotate", "api-key", "-o", "json", input="")
    rotation = json.loads(rotated.stdout)
    assert rotation["audited"] is True and rotated.stderr == ""

    with sqlite3.connect(revoctl_home / "revoctl.db") as db:
        rows = db.execute(
            "SELECT secret_name, action, version, previous_version, provider, actor"
            " FROM secret_audit_log WHERE action = 'rotate'"
        ).fetchall()
    assert len(rows) == 1
    name, action, version, previous, provider, actor = rows[0]
    assert (name, action, provider) == ("api-key", "rotate", "local")
    assert (version, previous) == (rotation["version"], rotation["previous_version"])
    assert "@" in actor

    assert cli("db", "downgrade", "0001").exit_code == 0
    with sqlite3.connect(revoctl_home / "revoctl.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "secret_audit_log" not in tables
