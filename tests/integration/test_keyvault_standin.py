"""Self-test of tests.support.keyvault: the real Azure SDK against the Key Vault stand-in."""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import aiohttp
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.rest import HttpRequest
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential
from azure.keyvault.secrets.aio import SecretClient

from tests.support.keyvault import IDENTITY_API_VERSION, VAULT_RESOURCE, KeyVaultStandIn

pytestmark = pytest.mark.keyvault


class ClientFactory(Protocol):
    def __call__(self, **kwargs: Any) -> SecretClient: ...


@pytest.fixture
def vault(monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyVaultStandIn]:
    with KeyVaultStandIn(page_size=2) as kv:
        kv.patch_env(monkeypatch)
        yield kv


@pytest.fixture
async def credential(vault: KeyVaultStandIn) -> AsyncIterator[DefaultAzureCredential]:
    # aiohttp built its default SSL context at import time, before SSL_CERT_FILE was set.
    async with DefaultAzureCredential(connection_verify=vault.ca_path) as credential:
        yield credential


@pytest.fixture
async def make_client(
    vault: KeyVaultStandIn, credential: DefaultAzureCredential
) -> AsyncIterator[ClientFactory]:
    clients: list[SecretClient] = []

    def factory(**kwargs: Any) -> SecretClient:
        options: dict[str, Any] = {
            "verify_challenge_resource": False,
            "connection_verify": vault.ca_path,
            "retry_total": 0,
            **kwargs,
        }
        client = SecretClient(vault.url, credential, **options)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
def client(make_client: ClientFactory) -> SecretClient:
    return make_client()


async def warm_up(client: SecretClient, vault: KeyVaultStandIn) -> None:
    """Challenge + token once, then forget about it."""
    vault.seed("warm", "up")
    assert (await client.get_secret("warm")).value == "up"
    vault.reset_counters()


async def test_set_then_get_latest_and_by_version(
    client: SecretClient, vault: KeyVaultStandIn
) -> None:
    first = await client.set_secret(
        "db-password", "v1", content_type="text/plain", tags={"env": "test"}
    )
    second = await client.set_secret("db-password", "v2")

    version = first.properties.version
    assert version is not None and re.fullmatch(r"[0-9a-f]{32}", version)
    assert first.id == f"{vault.url}secrets/db-password/{version}"
    assert first.properties.content_type == "text/plain"
    assert first.properties.tags == {"env": "test"}
    assert first.properties.enabled is True
    assert first.properties.created_on is not None

    latest = await client.get_secret("db-password")
    assert (latest.value, latest.properties.version) == ("v2", second.properties.version)
    assert (await client.get_secret("db-password", version)).value == "v1"
    assert [v.value for v in vault.versions_of("db-password")] == ["v1", "v2"]
    assert ("GET", "/secrets/db-password/") in [(r.method, r.path) for r in vault.requests]

    # The version-less form without trailing slash is served too.
    response = await client.send_request(HttpRequest("GET", "/secrets/db-password"))
    assert response.status_code == 200
    assert response.json()["value"] == "v2"


async def test_unknown_secret_or_version_is_secret_not_found(
    client: SecretClient, vault: KeyVaultStandIn
) -> None:
    vault.seed("present", "x")
    for name, version in [("absent", None), ("present", "0" * 32)]:
        with pytest.raises(ResourceNotFoundError) as info:
            await client.get_secret(name, version)
        assert info.value.error is not None
        assert info.value.error.code == "SecretNotFound"


async def test_invalid_name_is_bad_parameter(client: SecretClient) -> None:
    with pytest.raises(HttpResponseError) as info:
        await client.set_secret("not_valid", "x")
    assert info.value.status_code == 400
    assert info.value.error is not None
    assert info.value.error.code == "BadParameter"


async def test_list_secrets_and_versions_are_paged(
    client: SecretClient, vault: KeyVaultStandIn
) -> None:
    names = [f"secret-{i}" for i in range(5)]
    for name in names:
        vault.seed(name, f"value of {name}")
    rotating = [vault.seed("rotating", f"r{i}") for i in range(3)]
    vault.reset_counters()

    listed = [p.name async for p in client.list_properties_of_secrets()]
    assert len(listed) == 6
    assert set(listed) == {*names, "rotating"}
    list_pages = [r for r in vault.requests if r.path == "/secrets" and r.status == 200]
    assert len(list_pages) == 3  # 6 secrets, 2 per page (the 401 challenge comes first)
    assert all(r.query.get("api-version") for r in list_pages)

    versions = [p.version async for p in client.list_properties_of_secret_versions("rotating")]
    assert versions == rotating
    assert sum(r.path == "/secrets/rotating/versions" for r in vault.requests) == 2

    one_per_page = client.list_properties_of_secrets(max_page_size=1)
    assert len([p async for p in one_per_page]) == 6

    # Raw page: properties only, never values; nextLink points back at the vault.
    page = (await client.send_request(HttpRequest("GET", "/secrets"))).json()
    assert len(page["value"]) == 2
    assert all("value" not in item for item in page["value"])
    assert page["nextLink"].startswith(f"{vault.url}secrets?")


async def test_update_properties_and_disabled_secret_is_forbidden(
    client: SecretClient, vault: KeyVaultStandIn
) -> None:
    await client.set_secret("api-key", "k1")
    updated = await client.update_secret_properties(
        "api-key", content_type="application/json", tags={"owner": "ops"}
    )
    assert (updated.content_type, updated.tags) == ("application/json", {"owner": "ops"})

    disabled = await client.update_secret_properties("api-key", enabled=False)
    assert disabled.enabled is False
    assert vault.versions_of("api-key")[-1].enabled is False

    with pytest.raises(HttpResponseError) as info:
        await client.get_secret("api-key")
    error = info.value.error
    assert info.value.status_code == 403
    assert error is not None
    assert error.code == "Forbidden"
    assert error.innererror == {"code": "SecretDisabled"}
    assert "disabled secret" in str(error.message)

    listed = {p.name: p.enabled async for p in client.list_properties_of_secrets()}
    assert listed == {"api-key": False}

    await client.update_secret_properties("api-key", enabled=True)
    assert (await client.get_secret("api-key")).value == "k1"

    vault.seed("seeded-off", "x", enabled=False)
    with pytest.raises(HttpResponseError, match="disabled secret"):
        await client.get_secret("seeded-off")


async def test_delete_secret(client: SecretClient, vault: KeyVaultStandIn) -> None:
    vault.seed("doomed", "x")
    deleted = await client.delete_secret("doomed")  # the async client awaits the poller
    assert deleted.name == "doomed"
    assert vault.versions_of("doomed") == []
    with pytest.raises(ResourceNotFoundError):
        await client.get_secret("doomed")


async def test_token_is_cached_and_each_get_is_one_request(
    make_client: ClientFactory, vault: KeyVaultStandIn
) -> None:
    client = make_client()
    for i in range(10):
        vault.seed(f"s-{i}", str(i))
    for i in range(10):
        assert (await client.get_secret(f"s-{i}")).value == str(i)

    assert vault.token_requests == 1
    token_request = next(r for r in vault.requests if r.kind == "token")
    assert token_request.query == {"api-version": IDENTITY_API_VERSION, "resource": VAULT_RESOURCE}
    # 1 challenge (401) + 10 authorised reads
    assert [r.status for r in vault.requests if r.kind == "vault"] == [401] + [200] * 10

    vault.reset_counters()
    for i in range(5):
        await client.get_secret(f"s-{i}")
        assert vault.secret_requests == i + 1
    assert vault.token_requests == 0

    # A brand-new client on the same credential: the challenge is cached per vault origin and
    # the token in the credential, so its cold read is still a single HTTPS request.
    vault.reset_counters()
    await make_client().get_secret("s-0")
    assert (vault.secret_requests, vault.token_requests) == (1, 0)


async def test_error500_raises_after_configured_retries(
    make_client: ClientFactory, vault: KeyVaultStandIn
) -> None:
    for retries in (0, 2):
        client = make_client(retry_total=retries, retry_backoff_factor=0.01)
        await warm_up(client, vault)
        vault.mode = "error500"
        with pytest.raises(HttpResponseError) as info:
            await client.get_secret("warm")
        assert info.value.status_code == 500
        assert info.value.error is not None
        assert info.value.error.code == "InternalServerError"
        assert vault.secret_requests == 1 + retries
        vault.mode = "ok"


async def test_hang_is_bounded_by_read_timeout(
    make_client: ClientFactory, vault: KeyVaultStandIn
) -> None:
    client = make_client(read_timeout=0.3)
    await warm_up(client, vault)

    vault.mode = "hang"
    started = time.monotonic()
    with pytest.raises(ServiceResponseTimeoutError):
        await client.get_secret("warm")
    assert time.monotonic() - started < 1.5
    assert [r.status for r in vault.requests] == [None]

    vault.mode = "ok"
    assert (await client.get_secret("warm")).value == "up"


async def test_stop_is_quick_even_with_a_hanging_request(
    make_client: ClientFactory, vault: KeyVaultStandIn
) -> None:
    client = make_client(read_timeout=30)
    await warm_up(client, vault)
    vault.mode = "hang"
    pending = asyncio.ensure_future(client.get_secret("warm"))
    while not vault.requests:
        await asyncio.sleep(0.01)

    started = time.monotonic()
    await asyncio.to_thread(vault.stop)
    assert time.monotonic() - started < 0.5
    with pytest.raises(ServiceRequestError):  # connection dropped without an answer
        await pending


async def test_stopped_vault_is_connection_refused_then_restarts(
    make_client: ClientFactory, vault: KeyVaultStandIn
) -> None:
    client = make_client()
    await warm_up(client, vault)
    url = vault.url

    vault.stop()
    started = time.monotonic()
    with pytest.raises(ServiceRequestError):
        await client.get_secret("warm")
    assert time.monotonic() - started < 1.0

    vault.start()
    assert vault.url == url
    assert (await client.get_secret("warm")).value == "up"


async def test_shared_session_transport_reuses_one_connection(
    vault: KeyVaultStandIn,
) -> None:
    # connection_verify=<path> makes azure-core build a new SSLContext per request, which
    # defeats aiohttp's pool (one TLS handshake per request). A session whose connector
    # carries the context keeps connections alive.
    vault.seed("pooled", "p")
    context = ssl.create_default_context(cafile=vault.ca_path)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        transport = AioHttpTransport(session=session, session_owner=False)
        async with (
            DefaultAzureCredential(transport=transport) as credential,
            SecretClient(
                vault.url,
                credential,
                verify_challenge_resource=False,
                transport=transport,
                retry_total=0,
            ) as client,
        ):
            await client.get_secret("pooled")
            vault.reset_counters()
            for _ in range(5):
                await client.get_secret("pooled")
    assert (vault.secret_requests, vault.connections) == (5, 0)


async def test_forged_token_is_rejected(vault: KeyVaultStandIn) -> None:
    class ForgedCredential:
        async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken("forged", int(time.time()) + 3600)

        async def close(self) -> None:
            pass

        async def __aenter__(self) -> ForgedCredential:
            return self

        async def __aexit__(self, *args: object) -> None:
            pass

    vault.seed("guarded", "x")
    async with SecretClient(
        vault.url,
        ForgedCredential(),
        verify_challenge_resource=False,
        connection_verify=vault.ca_path,
        retry_total=0,
    ) as client:
        with pytest.raises(ClientAuthenticationError):
            await client.get_secret("guarded")
    assert [r.status for r in vault.requests] == [401, 401]


async def test_identity_endpoint_checks_the_identity_header(
    vault: KeyVaultStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "wrong")
    async with ManagedIdentityCredential(connection_verify=vault.ca_path) as credential:
        with pytest.raises(ClientAuthenticationError):
            await credential.get_token(f"{VAULT_RESOURCE}/.default")
    assert [(r.kind, r.status) for r in vault.requests] == [("token", 401)]


def test_env_is_enough_for_a_child_process(vault: KeyVaultStandIn) -> None:
    # In a fresh process SSL_CERT_FILE is read before aiohttp is imported: no extra kwargs
    # except verify_challenge_resource.
    vault.seed("from-child", "hello")
    script = textwrap.dedent(
        f"""
        import asyncio
        from azure.identity.aio import DefaultAzureCredential
        from azure.keyvault.secrets.aio import SecretClient

        async def main():
            async with DefaultAzureCredential() as credential, SecretClient(
                {vault.url!r}, credential, verify_challenge_resource=False, retry_total=0
            ) as client:
                print((await client.get_secret("from-child")).value)

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=vault.client_environ(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello"
    assert vault.token_requests == 1


def test_mode_is_validated(vault: KeyVaultStandIn) -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        vault.mode = "gone"  # type: ignore[assignment]
