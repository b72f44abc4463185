"""``[secrets] audit_reads``: provider reads in ``secret_audit_log`` (never cache hits, never a
value), and ``revoctl secrets audit`` listing the log, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from revoctl.core.errors import BackendUnavailableError, NotFoundError
from revoctl.core.secret_audit import AUDIT_ENTRY_KEYS, audit_entries
from revoctl.core.services import load_services
from revoctl.runtime.watch import SecretChangeWatcher
from tests.support.keyvault import KeyVaultStandIn

CANARY = "canary-read-audit-value-7f3a9c"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, cli, monkeypatch: pytest.MonkeyPatch) -> str:
    """The embedded SQLite database, or a fresh PostgreSQL one, migrated."""
    if request.param == "postgresql":
        monkeypatch.setenv("REVOCTL_DATABASE__URL", request.getfixturevalue("postgres_url"))
        assert cli("db", "migrate").exit_code == 0
    return str(request.param)


async def _log(name: str | None = None) -> list[dict[str, Any]]:
    async with load_services() as services:
        return await audit_entries(services.db, name=name)


def _reads(rows: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    return [(r["name"], r["version"], r["outcome"]) for r in rows if r["action"] == "read"]


async def test_provider_reads_are_audited_cache_hits_are_not(
    database: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("REVOCTL_SECRETS__AUDIT_READS", "true")
    async with load_services() as services:
        written = await services.secrets.set_secret("api-key", CANARY)
        for _ in range(3):  # one provider read, then two cache hits
            assert await services.secrets.get_secret("api-key") == CANARY
        with pytest.raises(NotFoundError):
            await services.secrets.get_secret("no-such-secret")
    rows = await _log()
    assert _reads(rows) == [
        ("no-such-secret", None, "error"),
        ("api-key", written.version, "ok"),
    ]
    read = rows[1]
    assert (read["provider"], read["previous_version"]) == ("local", None)
    assert "@" in read["actor"]
    assert [(r["action"], r["outcome"]) for r in rows] == [
        ("read", "error"),
        ("read", "ok"),
        ("set", "ok"),
    ]
    assert CANARY not in json.dumps(rows, default=str)


async def test_off_by_default_no_read_is_audited(database: str):
    async with load_services() as services:
        await services.secrets.set_secret("api-key", CANARY)
        assert await services.secrets.get_secret("api-key") == CANARY
    rows = await _log()
    assert [r["action"] for r in rows] == ["set"]


async def test_read_rows_are_not_changes_to_the_gateway_watcher(
    monkeypatch: pytest.MonkeyPatch,
):
    """A read row must not make every gateway drop its cached value (and read, and log...)."""
    monkeypatch.setenv("REVOCTL_SECRETS__AUDIT_READS", "true")
    async with load_services() as services:
        await services.secrets.set_secret("api-key", CANARY)
        watcher = SecretChangeWatcher(services.db, services.secrets)
        assert await watcher.check() == []  # starts from here
        services.secrets.invalidate("api-key")
        await services.secrets.get_secret("api-key")
        writer = services.secrets._reads.writer
        assert writer is not None and await writer.flush() and writer.written == 1
        assert await watcher.check() == []
        await services.secrets.rotate("api-key")
        assert await watcher.check() == ["api-key"]


async def _old_row(name: str, hours: float) -> None:
    from revoctl.core.db.models import SecretAuditLog

    row = SecretAuditLog(
        secret_name=name, action="set", version="v0", provider="local", actor="someone@host",
        status="done", ts=datetime.now(UTC) - timedelta(hours=hours),
    )  # fmt: skip
    async with load_services() as services:
        await services.db.transaction(lambda session: _add(session, row))


async def _add(session: Any, row: object) -> None:
    session.add(row)


def test_the_audit_command_filters_by_name_and_since(
    cli, database: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("REVOCTL_SECRETS__AUDIT_READS", "true")
    assert cli("secrets", "set", "api-key", input=CANARY).exit_code == 0
    assert cli("secrets", "set", "other", input="x" + CANARY).exit_code == 0
    got = cli("secrets", "get", "api-key")
    assert got.exit_code == 0 and got.stdout.strip() == CANARY
    asyncio.run(_old_row("api-key", hours=3))

    listed = cli("secrets", "audit", "api-key", "--json")
    assert listed.exit_code == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["action"]) for r in rows] == [
        ("api-key", "read"),
        ("api-key", "set"),
        ("api-key", "set"),
    ]
    assert all(list(r) == list(AUDIT_ENTRY_KEYS) for r in rows)
    assert rows[0]["outcome"] == "ok" and rows[0]["version"] == rows[1]["version"]
    assert datetime.fromisoformat(rows[0]["at"]).tzinfo is not None

    recent = json.loads(cli("secrets", "audit", "api-key", "--since", "1h", "--json").stdout)
    assert [r["action"] for r in recent] == ["read", "set"]
    newest = json.loads(cli("secrets", "audit", "--limit", "1", "-o", "json").stdout)
    assert [r["action"] for r in newest] == ["read"]

    table = cli("secrets", "audit")
    assert table.exit_code == 0
    assert table.stdout.splitlines()[0].split()[:3] == ["AT", "NAME", "ACTION"]
    assert len(table.stdout.splitlines()) == 1 + 4 and "other" in table.stdout
    everything = listed.stdout + table.stdout + table.stderr + recent.__repr__()
    assert CANARY not in everything


@pytest.mark.parametrize("since", ["1x", "soon", "999999w"])
def test_a_bad_since_is_one_line_and_exit_2(cli, since: str):
    result = cli("secrets", "audit", "--since", since)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "invalid duration" in result.stderr


def test_an_empty_log_says_so(cli):
    result = cli("secrets", "audit", "nothing-here")
    assert result.exit_code == 0 and result.stdout == ""
    assert "no audit entries" in result.stderr
    assert json.loads(cli("secrets", "audit", "nothing-here", "--json").stdout) == []


@pytest.mark.keyvault
async def test_key_vault_reads_and_failures_are_audited(monkeypatch: pytest.MonkeyPatch):
    with KeyVaultStandIn() as vault:
        vault.patch_env(monkeypatch)
        monkeypatch.setenv("REVOCTL_SECRETS__PROVIDER", "azure_key_vault")
        monkeypatch.setenv("REVOCTL_SECRETS__AZURE__VAULT_URL", vault.url)
        monkeypatch.setenv("REVOCTL_SECRETS__AZURE__VERIFY_CHALLENGE_RESOURCE", "false")
        monkeypatch.setenv("REVOCTL_SECRETS__TIMEOUT_SECONDS", "1")
        monkeypatch.setenv("REVOCTL_SECRETS__FALLBACK", "none")
        monkeypatch.setenv("REVOCTL_SECRETS__AUDIT_READS", "true")
        async with load_services() as services:
            written = await services.secrets.set_secret("vault-key", CANARY)
            assert await services.secrets.get_secret("vault-key") == CANARY
            vault.mode = "error500"
            with pytest.raises(BackendUnavailableError):
                await services.secrets.get_secret("vault-key", "0" * 32)
    rows = await _log("vault-key")
    assert _reads(rows) == [("vault-key", "0" * 32, "error"), ("vault-key", written.version, "ok")]
    assert {r["provider"] for r in rows} == {"azure_key_vault"}
    assert CANARY not in json.dumps(rows, default=str)


@pytest.mark.slow
async def test_a_database_away_neither_fails_nor_holds_up_reads(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """The read is answered at once; closing waits at most ``timeout_seconds`` for the log,
    then drops the row with a warning (no value in it)."""
    timeout = 1.0
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("REVOCTL_DATABASE__URL", f"postgresql+asyncpg://postgres@127.0.0.1:{port}/x")
    monkeypatch.setenv("REVOCTL_SECRETS__AUDIT_READS", "true")
    monkeypatch.setenv("REVOCTL_SECRETS__TIMEOUT_SECONDS", str(timeout))
    services_cm = load_services()
    services = await services_cm.__aenter__()
    try:
        await services.secrets.store.set("api-key", CANARY)  # the store itself: no audit row
        started = time.monotonic()
        assert await services.secrets.get_secret("api-key") == CANARY
        assert time.monotonic() - started < timeout / 2
    finally:
        started = time.monotonic()
        await services_cm.__aexit__(None, None, None)
    assert time.monotonic() - started < timeout * 2
    assert "still buffered at shutdown were dropped" in caplog.text
    assert CANARY not in caplog.text


async def test_concurrent_misses_share_one_read_and_one_row(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("REVOCTL_SECRETS__AUDIT_READS", "true")
    async with load_services() as services:
        await services.secrets.set_secret("api-key", CANARY)
        values = await asyncio.gather(*(services.secrets.get_secret("api-key") for _ in range(8)))
        assert values == [CANARY] * 8
    assert len(_reads(await _log("api-key"))) == 1
