"""`KeyVaultSecretStore`: Azure Key Vault through the async ``azure-keyvault-secrets`` client.

Authentication is azure-identity's `DefaultAzureCredential` (environment, workload
identity, managed identity, Azure CLI, ...), optionally pinned to a user-assigned
identity by ``client_id``. The aiohttp transport reads the CA bundle once, when
aiohttp is imported, so ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE`` are read here
into one SSL context, shared by the credential and the client through one
transport: a private CA then works however late the variable was set, and
connections are kept alive (azure-core's ``connection_verify=PATH`` would build
a new context, hence a new TLS handshake, for every request). This is the only
module that imports the Azure SDK, and it is imported only when the provider is
``azure_key_vault``. Values are never written to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.identity.aio import DefaultAzureCredential
from azure.keyvault.secrets import SecretProperties as AzureSecretProperties
from azure.keyvault.secrets.aio import SecretClient

from revoctl.core.errors import (
    BackendUnavailableError,
    ConfigError,
    NotFoundError,
    UsageError,
    first_line,
)
from revoctl.core.secrets.base import (
    Secret,
    SecretDisabledError,
    SecretProperties,
    SecretProvider,
)

if TYPE_CHECKING:
    from revoctl.core.secrets.settings import SecretConfig

CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
LIST_CONCURRENCY = 8
"""Version histories fetched at once by `KeyVaultSecretStore.list_secrets`."""
RETRIES = 2
"""azure-core retries on top of the first attempt; the manager bounds the total time."""

_EPOCH = datetime.fromtimestamp(0, UTC)


class KeyVaultSecretStore:
    """Secrets in one Azure Key Vault; a rotation is a new version (Key Vault has no rotate)."""

    provider = SecretProvider.AZURE_KEY_VAULT

    def __init__(
        self,
        vault_url: str,
        *,
        client_id: str = "",
        tenant_id: str = "",
        verify_challenge_resource: bool = True,
        timeout: float = 10.0,
    ) -> None:
        """Checks the settings and reads the CA bundle; opens nothing until first use.

        :raises ConfigError: the CA bundle named by the environment cannot be read.
        """
        self.vault_url = vault_url
        self._timeout = timeout
        self._identity: dict[str, Any] = {"process_timeout": timeout}
        if client_id:
            self._identity["managed_identity_client_id"] = client_id
        if tenant_id:
            self._identity["workload_identity_tenant_id"] = tenant_id
            self._identity["shared_cache_tenant_id"] = tenant_id
        self._verify_challenge_resource = verify_challenge_resource
        self._ssl_context = _ca_bundle_context()
        self._resources = contextlib.AsyncExitStack()
        self._opened: SecretClient | None = None
        self._opening = asyncio.Lock()

    async def _client(self) -> SecretClient:
        """The SDK client, built on first use with the credential and the shared transport.

        Everything built is registered for closing as it is built, so a failure part
        way leaks nothing.
        """
        if self._opened is not None:
            return self._opened
        async with self._opening:
            if self._opened is None:
                self._opened = await self._build()
        return self._opened

    async def _build(self) -> SecretClient:
        transport: dict[str, Any] = {
            "connection_timeout": self._timeout,
            "read_timeout": self._timeout,
        }
        if self._ssl_context is not None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl_context))
            self._resources.push_async_callback(session.close)
            transport["transport"] = AioHttpTransport(session=session, session_owner=False)
        credential = DefaultAzureCredential(**self._identity, **transport)
        self._resources.push_async_callback(credential.close)
        client = SecretClient(
            self.vault_url,
            credential,
            verify_challenge_resource=self._verify_challenge_resource,
            retry_total=RETRIES,
            retry_backoff_factor=0.2,
            retry_backoff_max=2,
            **transport,
        )
        self._resources.push_async_callback(client.close)
        return client

    @classmethod
    def from_config(cls, config: SecretConfig, *, home: Path) -> KeyVaultSecretStore:
        azure = config.azure
        return cls(
            azure.vault_url,
            client_id=azure.client_id,
            tenant_id=azure.tenant_id,
            verify_challenge_resource=azure.verify_challenge_resource,
            timeout=config.timeout_seconds,
        )

    async def get(self, name: str, version: str | None = None) -> Secret:
        with self._translate_errors(name, version):
            found = await (await self._client()).get_secret(name, version)
        return self._secret(name, found.value or "", found.properties)

    async def set(self, name: str, value: str) -> Secret:
        with self._translate_errors(name):
            written = await (await self._client()).set_secret(name, value)
        return self._secret(name, value, written.properties)

    async def list_secrets(self) -> list[SecretProperties]:
        """The latest version of each secret. Key Vault's listing leaves out the current
        version id, so each secret's version history (properties only) supplies it."""
        client = await self._client()
        with self._translate_errors():
            names = [p.name async for p in client.list_properties_of_secrets() if p.name]
        limit = asyncio.Semaphore(LIST_CONCURRENCY)

        async def latest(name: str) -> SecretProperties | None:
            async with limit:
                try:
                    return (await self.versions(name))[0]
                except NotFoundError:  # deleted since the listing
                    return None

        found = await asyncio.gather(*(latest(name) for name in sorted(names)))
        return [props for props in found if props is not None]

    async def versions(self, name: str) -> list[SecretProperties]:
        client = await self._client()
        with self._translate_errors(name):
            pager = client.list_properties_of_secret_versions(name)
            found = [p async for p in pager]
        if not found:
            raise NotFoundError(f"secret {name!r} not found in {self.vault_url}")
        # The service lists versions in no promised order: newest first by creation date
        # (enabling or disabling an old version changes its update date, not its place), and
        # among versions of the same second (dates have whole seconds) the later-listed first.
        ordered = sorted(reversed(found), key=lambda p: p.created_on or _EPOCH, reverse=True)
        return [_properties(p) for p in ordered]

    async def ping(self) -> None:
        """One page of one secret's properties: proves the token and the vault."""
        client = await self._client()
        with self._translate_errors():
            async for _ in client.list_properties_of_secrets(max_page_size=1).by_page():
                break

    async def close(self) -> None:
        """Close the client, the credential and the session: each one, whatever the others do."""
        self._opened = None
        await self._resources.aclose()

    def _secret(self, name: str, value: str, properties: AzureSecretProperties) -> Secret:
        props = _properties(properties)
        return Secret(name, value, props.version, props.updated_on, props.enabled, self.provider)

    @contextlib.contextmanager
    def _translate_errors(self, name: str = "", version: str | None = None) -> Iterator[None]:
        """Azure errors as revoctl's; messages name the vault and the secret, never a value."""
        what = f"secret {name!r}" + (f" version {version!r}" if version else "") if name else ""
        try:
            yield
        except ResourceNotFoundError:
            raise NotFoundError(f"{what or 'secret'} not found in {self.vault_url}") from None
        except ClientAuthenticationError as exc:
            raise BackendUnavailableError(
                f"Key Vault {self.vault_url}: authentication failed: {first_line(exc)}"
            ) from exc
        except HttpResponseError as exc:
            status = exc.status_code or 0
            if status == 403 and _inner_code(exc) == "SecretDisabled":
                raise SecretDisabledError(f"{what} is disabled in {self.vault_url}") from None
            if status == 400:
                raise UsageError(f"Key Vault rejected the request: {first_line(exc)}") from None
            raise BackendUnavailableError(
                f"Key Vault {self.vault_url} answered {status}: {first_line(exc)}"
            ) from exc
        except AzureError as exc:  # connection refused, TLS, timeouts, dropped connections
            raise BackendUnavailableError(
                f"Key Vault {self.vault_url} unreachable: {first_line(exc)}"
            ) from exc


def _ca_bundle_context() -> ssl.SSLContext | None:
    """One SSL context for the CA bundle the environment names, or None for the default.

    :raises ConfigError: the bundle cannot be read.
    """
    variable = next((name for name in CA_BUNDLE_VARIABLES if os.environ.get(name)), None)
    if variable is None:
        return None
    ca_bundle = os.environ[variable]
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{variable}={ca_bundle}: not a readable PEM CA bundle "
            f"({getattr(exc, 'strerror', None) or exc})"
        ) from None


def _properties(props: AzureSecretProperties) -> SecretProperties:
    return SecretProperties(
        name=props.name or "",
        version=props.version or "",
        updated_on=props.updated_on or props.created_on or _EPOCH,
        enabled=bool(props.enabled),
    )


def _inner_code(exc: HttpResponseError) -> str | None:
    """The service's inner error code (e.g. ``SecretDisabled``), when it sent one."""
    inner = getattr(getattr(exc, "error", None), "innererror", None)
    if isinstance(inner, dict) and inner.get("code"):
        return str(inner["code"])
    with contextlib.suppress(Exception):
        body = json.loads(exc.response.text()) if exc.response is not None else {}
        return str(body["error"]["innererror"]["code"])
    return None
