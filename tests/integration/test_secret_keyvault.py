"""The Key Vault provider: the real SDK and DefaultAzureCredential (managed identity) against
the stand-in, through the library and the CLI, healthy and under faults."""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator

import pytest

from revoctl.config import load_config
from revoctl.core.errors import BackendUnavailableError
from revoctl.core.secrets import SecretDisabledError, SecretManager, SecretProvider
from tests.conftest import run_revoctl
from tests.support.keyvault import KeyVaultStandIn

pytestmark = pytest.mark.keyvault

TIMEOUT = 1.0

# A request cut off by the timeout (hang) or refused (gone) leaves aiohttp's half-made
# connection to the garbage collector, which reports it as an unclosed transport
# (aio-libs/aiohttp#6071, #4703). These tests expect that, and collect it before they end,
# so that no other test sees the warning; everywhere else ResourceWarning is an error.
faulty_sockets = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)


@pytest.fixture
def collect_faulty_sockets() -> Iterator[None]:
    yield
    gc.collect()


"""``timeout_seconds`` in these tests: the bound every fault must respect."""


@pytest.fixture
def vault(monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyVaultStandIn]:
    """The stand-in, with revoctl pointed at it through the environment (CA via SSL_CERT_FILE,
    managed identity via IDENTITY_ENDPOINT/IDENTITY_HEADER)."""
    with KeyVaultStandIn(page_size=2) as kv:
        kv.patch_env(monkeypatch)
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")  # SSL_CERT_FILE alone must be enough
        monkeypatch.setenv("REVOCTL_SECRETS__PROVIDER", "azure_key_vault")
        monkeypatch.setenv("REVOCTL_SECRETS__AZURE__VAULT_URL", kv.url)
        monkeypatch.setenv("REVOCTL_SECRETS__AZURE__VERIFY_CHALLENGE_RESOURCE", "false")
        monkeypatch.setenv("REVOCTL_SECRETS__TIMEOUT_SECONDS", str(TIMEOUT))
        yield kv


def manager(**overrides: str) -> SecretManager:
    loaded = load_config(overrides=overrides)
    return SecretManager(loaded.settings.secrets, home=loaded.home)


async def test_library_round_trip(vault: KeyVaultStandIn):
    async with manager() as secrets:
        assert secrets.store.provider is SecretProvider.AZURE_KEY_VAULT
        written = await secrets.set_secret("openai-api-key", "sk-first-value")
        assert await secrets.get_secret("openai-api-key") == "sk-first-value"
        rotation = await secrets.rotate("openai-api-key")
        assert rotation.previous_version == written.version
        assert await secrets.get_secret("openai-api-key") == rotation.value
        assert await secrets.get_secret("openai-api-key", written.version) == "sk-first-value"
        history = await secrets.versions("openai-api-key")
        assert [p.version for p in history] == [rotation.version, written.version]
        [listed] = await secrets.list_secrets()
        assert (listed.name, listed.version, listed.enabled) == (
            "openai-api-key",
            rotation.version,
            True,
        )
    stored = vault.versions_of("openai-api-key")
    assert [v.value for v in stored] == ["sk-first-value", rotation.value]
    # Listing and version history use the properties API only: no value is fetched.
    value_reads = [r for r in vault.requests if r.method == "GET" and _reads_a_value(r.path)]
    assert len(value_reads) == 3


def _reads_a_value(path: str) -> bool:
    """``GET /secrets/NAME[/VERSION]``: the only route that answers with a value."""
    return path.startswith("/secrets/") and not path.rstrip("/").endswith("/versions")


async def test_a_disabled_secret_is_reported_as_such(vault: KeyVaultStandIn):
    vault.seed("retired-key", "old-value", enabled=False)
    async with manager() as secrets:
        with pytest.raises(SecretDisabledError, match="'retired-key' is disabled"):
            await secrets.get_secret("retired-key")


def test_a_disabled_secret_exits_3(vault: KeyVaultStandIn, cli):
    vault.seed("retired-key", "old-value", enabled=False)
    result = cli("secrets", "get", "retired-key")
    assert result.exit_code == 3 and "is disabled" in result.stderr


async def test_one_https_request_per_read_once_the_token_is_cached(vault: KeyVaultStandIn):
    vault.seed("api-key", "value-1")
    async with manager(**{"secrets.cache_ttl_seconds": "0"}) as secrets:
        await secrets.get_secret("api-key")  # challenge, token, then the read
        vault.reset_counters()
        for _ in range(5):
            await secrets.get_secret("api-key")
    assert (vault.secret_requests, vault.token_requests) == (5, 0)


async def test_reads_reuse_one_tls_connection_with_a_private_ca(vault: KeyVaultStandIn):
    """A CA from SSL_CERT_FILE must not cost a TLS handshake per read."""
    vault.seed("api-key", "value-1")
    async with manager(**{"secrets.cache_ttl_seconds": "0"}) as secrets:
        await secrets.get_secret("api-key")
        vault.reset_counters()
        for _ in range(5):
            await secrets.get_secret("api-key")
    assert vault.connections == 0


@faulty_sockets
@pytest.mark.usefixtures("collect_faulty_sockets")
@pytest.mark.parametrize("fault", ["error500", "hang", "gone"])
async def test_stale_if_error_serves_the_cached_value(vault: KeyVaultStandIn, fault: str):
    vault.seed("api-key", "value-1")
    overrides = {"secrets.cache_ttl_seconds": "0", "secrets.fallback": "none"}
    async with manager(**overrides) as secrets:
        assert await secrets.get_secret("api-key") == "value-1"
        if fault == "gone":
            vault.stop()
        else:
            vault.mode = fault  # type: ignore[assignment]
        started = time.monotonic()
        assert await secrets.get_secret("api-key") == "value-1"
        health = await secrets.health_check()
        assert time.monotonic() - started < 3 * TIMEOUT + 1
        assert (health["status"], health["reachable"]) == ("degraded", False)
        assert health["stale_served"] == 1
        with pytest.raises(BackendUnavailableError, match="no cached value, no fallback"):
            await secrets.get_secret("other-key")


def test_cli_round_trip(vault: KeyVaultStandIn, cli):
    first = json.loads(cli("secrets", "set", "db-password", "-o", "json", input="pw-1").stdout)
    assert cli("secrets", "get", "db-password").stdout == "pw-1\n"
    listed = json.loads(cli("secrets", "list", "-o", "json").stdout)
    assert [(r["name"], r["version"], r["enabled"]) for r in listed] == [
        ("db-password", first["version"], True)
    ]
    rotated = cli("secrets", "rotate", "db-password", "-o", "json")
    assert rotated.exit_code == 0, rotated.stderr
    rotation = json.loads(rotated.stdout)
    assert rotation["previous_version"] == first["version"]
    history = json.loads(cli("secrets", "versions", "db-password", "-o", "json").stdout)
    assert [v["version"] for v in history] == [rotation["version"], first["version"]]
    old = json.loads(
        cli("secrets", "get", "db-password", "--version", first["version"], "-o", "json").stdout
    )
    assert (old["value"], old["provider"]) == ("pw-1", "azure_key_vault")
    assert vault.versions_of("db-password")[0].value == "pw-1"
    # A fresh process: the CA comes from SSL_CERT_FILE, the token from the managed identity.
    child = run_revoctl(["secrets", "get", "db-password", "--version", first["version"]])
    assert (child.returncode, child.stdout) == (0, "pw-1\n"), child.stderr


@faulty_sockets
@pytest.mark.usefixtures("collect_faulty_sockets")
@pytest.mark.parametrize("fault", ["error500", "hang", "gone"])
def test_cli_falls_back_to_the_local_store_and_health_is_degraded(
    vault: KeyVaultStandIn, cli, monkeypatch: pytest.MonkeyPatch, fault: str
):
    with monkeypatch.context() as local:
        local.setenv("REVOCTL_SECRETS__PROVIDER", "local")
        assert cli("secrets", "set", "api-key", input="local-copy").exit_code == 0
    if fault == "gone":
        vault.stop()
    else:
        vault.mode = fault  # type: ignore[assignment]
    got = cli("secrets", "get", "api-key", "-o", "json")
    assert got.exit_code == 0, got.stderr
    assert (json.loads(got.stdout)["value"], json.loads(got.stdout)["provider"]) == (
        "local-copy",
        "local",
    )
    assert "answered from the local fallback" in got.stderr
    health = cli("health", "-o", "json")
    report = json.loads(health.stdout)
    assert report["services"]["secrets"]["status"] == "degraded"
    assert report["services"]["secrets"]["fallback_in_use"] is True
    assert report["status"] in ("degraded", "unhealthy")


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["hang", "gone"])
def test_nothing_cached_and_no_fallback_exits_4_in_bounded_time(vault: KeyVaultStandIn, fault: str):
    vault.seed("api-key", "value-1")
    if fault == "gone":
        vault.stop()
    else:
        vault.mode = "hang"
    started = time.monotonic()
    result = run_revoctl(
        ["secrets", "get", "api-key"], env={"REVOCTL_SECRETS__FALLBACK": "none"}, timeout=30
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith("error: ") and "no cached value, no fallback" in result.stderr
    assert result.stdout == ""
    assert elapsed < TIMEOUT + 5  # the bound plus interpreter start-up, never the 60 s hang


def test_a_missing_ca_bundle_is_a_configuration_error(
    vault: KeyVaultStandIn, cli, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    result = cli("secrets", "list")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: SSL_CERT_FILE=/nonexistent/ca.pem: not a readable")


@pytest.mark.slow
@faulty_sockets
def test_health_returns_within_its_deadline_while_the_vault_hangs(
    vault: KeyVaultStandIn, collect_faulty_sockets: None
):
    """The vault accepts and never answers; the secrets timeout (10 s) is longer than the health
    deadline, which bounds the whole report: the fallback answers, so secrets are degraded."""
    deadline = 3.0
    vault.mode = "hang"
    env = {
        "REVOCTL_SECRETS__TIMEOUT_SECONDS": "10",
        "REVOCTL_HEALTH__TIMEOUT_SECONDS": str(deadline),
    }
    started = time.monotonic()
    result = run_revoctl(["health", "-o", "json"], env=env, timeout=60)
    elapsed = time.monotonic() - started
    assert elapsed < deadline + 2, f"health took {elapsed:.1f}s"
    secrets = json.loads(result.stdout)["services"]["secrets"]
    assert secrets["status"] == "degraded"
    assert secrets["fallback_in_use"] is True
    assert "reads answered from the local fallback" in secrets["reason"]
