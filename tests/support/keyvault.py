"""In-process Azure Key Vault stand-in for tests.

`KeyVaultStandIn` is an HTTPS server on 127.0.0.1 (ephemeral port, background thread) that
speaks enough of the Key Vault *secrets* REST API, and of the App Service managed-identity
token endpoint, for the real ``azure-keyvault-secrets`` and ``azure-identity`` packages to
be driven against it. TLS uses a throwaway ``trustme`` CA whose PEM is written to ``ca_path``.

Usage::

    with KeyVaultStandIn() as kv:
        kv.patch_env(monkeypatch)  # or: subprocess.run(..., env=kv.client_environ())
        credential = DefaultAzureCredential(connection_verify=kv.ca_path)
        client = SecretClient(
            kv.url,
            credential,
            verify_challenge_resource=False,  # required, see below
            connection_verify=kv.ca_path,     # required in-process, see below
            retry_total=0,                    # fail fast on faults
            read_timeout=0.5,                 # seconds; bounds "hang" mode
        )

Notes for clients:

* ``verify_challenge_resource=False`` is mandatory: the 401 challenge names the resource
  ``https://vault.azure.net`` while the vault lives at ``127.0.0.1``, and the SDK would
  otherwise refuse the challenge ("does not match the requested domain").
* The async transport (aiohttp) builds its default SSL context when ``aiohttp`` is imported,
  so ``SSL_CERT_FILE`` set later in the same process is ignored. In-process, pass
  ``connection_verify=kv.ca_path`` to both the credential and the client. ``env()`` still
  sets ``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE``, which work for child processes and for
  the sync (requests) transport.
* ``connection_verify=<path>`` makes azure-core build a fresh ``SSLContext`` per request,
  which keys aiohttp's pool differently every time: one TCP+TLS connection per request.
  To keep connections alive, share ``AioHttpTransport(session=aiohttp.ClientSession(
  connector=aiohttp.TCPConnector(ssl=ctx)), session_owner=False)`` as ``transport=`` of
  the credential and the client instead (see the self-test).
* The IDENTITY_ENDPOINT here is https (real App Service uses http://localhost), so the
  managed-identity request needs the CA too; tokens are cached by the credential and the
  Key Vault challenge is cached per vault origin (process-wide), so a new client on the
  same credential makes no identity request and no 401 round trip.
* Retries: azure-core's ``RetryPolicy`` kwargs (``retry_total``, ``retry_backoff_factor``,
  ``retry_backoff_max``, ...) pass straight through ``SecretClient(...)``; the defaults
  (10 total, 0.8 s backoff) make faults slow. Timeouts: ``connection_timeout`` and
  ``read_timeout`` (seconds), on the constructor or per call; a read timeout surfaces as
  ``ServiceResponseTimeoutError``, a refused connection as ``ServiceRequestError``.

Behaviour:

* Identity: ``GET /msi/token?api-version=2019-08-01&resource=...`` with header
  ``X-IDENTITY-HEADER`` returns ``access_token``/``expires_on``/``resource``/``token_type``.
  The token route is never affected by ``mode``.
* Vault: requests without a valid bearer token get 401 with a ``WWW-Authenticate: Bearer``
  challenge. Routes: ``PUT /secrets/{name}``, ``GET /secrets/{name}[/{version}]``,
  ``PATCH /secrets/{name}/{version}``, ``DELETE /secrets/{name}`` (hard delete, no soft-delete
  recovery), ``GET /secrets`` and ``GET /secrets/{name}/versions`` (paged, at most
  ``page_size`` items per page, ``nextLink`` with ``$skiptoken``).
* Faults (vault routes only): ``mode = "ok" | "error500" | "hang"``; ``stop()`` for "gone".
  A hanging request never gets an answer: when it is woken (mode change, ``stop()`` or
  ``hang_seconds`` elapsed) its connection is dropped.
* Not modelled: soft delete/recovery, backup/restore, ``nbf``/``exp`` enforcement.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Final, Literal, get_args
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import trustme

Mode = Literal["ok", "error500", "hang"]
RequestKind = Literal["token", "vault"]

IDENTITY_PATH: Final = "/msi/token"
IDENTITY_API_VERSION: Final = "2019-08-01"
VAULT_RESOURCE: Final = "https://vault.azure.net"
MAX_PAGE_SIZE: Final = 25  # the service rejects larger maxresults

# Variables that would steer DefaultAzureCredential away from the App Service managed identity
# (service principal, workload identity, Service Fabric, Arc, Cloud Shell, a user-assigned
# client id, AZURE_TOKEN_CREDENTIALS=dev...). They must be *absent*: EnvironmentCredential
# tests ``os.environ.get(...) is not None``, so even an empty AZURE_CLIENT_ID breaks it.
UNSET_ENV_VARS: Final = (
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_TOKEN_CREDENTIALS",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
)

_NAME_RE: Final = re.compile(r"[0-9A-Za-z-]{1,127}")
_JSON = dict[str, Any]


@dataclass
class SecretVersion:
    """One stored version of a secret (times are unix seconds)."""

    name: str
    version: str
    value: str
    content_type: str | None = None
    tags: dict[str, str] | None = None
    enabled: bool = True
    not_before: int | None = None
    expires: int | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    updated: int = field(default_factory=lambda: int(time.time()))


@dataclass
class RecordedRequest:
    """A request as the stand-in saw it; ``status`` stays None for unanswered requests."""

    method: str
    path: str
    query: dict[str, str]
    kind: RequestKind
    status: int | None = None


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes

    def json(self) -> _JSON:
        try:
            document = json.loads(self.body or b"{}")
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise _BadRequest("The request body is not a JSON object.")
        return document


@dataclass(frozen=True)
class _Response:
    status: int
    body: _JSON
    headers: dict[str, str] = field(default_factory=dict)


class _BadRequest(Exception):
    """Raised by route handlers for a 400 BadParameter answer."""


def _error(status: int, code: str, message: str, inner_code: str | None = None) -> _Response:
    error: _JSON = {"code": code, "message": message}
    if inner_code is not None:
        error["innererror"] = {"code": inner_code}
    return _Response(status, {"error": error})


_RouteHandler = Callable[..., _Response]


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: _RouteHandler


def _route(method: str, pattern: str, handler: _RouteHandler) -> _Route:
    return _Route(method, re.compile(pattern), handler)


class KeyVaultStandIn:
    """HTTPS Key Vault (secrets) + managed-identity endpoint, in memory, in a thread."""

    def __init__(
        self, *, page_size: int = 2, hang_seconds: float = 60.0, token_lifetime: int = 3600
    ) -> None:
        self.page_size = page_size
        self.hang_seconds = hang_seconds
        self.token_lifetime = token_lifetime
        self.tenant_id = str(uuid.uuid4())
        self.identity_header = secrets.token_hex(16)
        self.recovery_level = "Recoverable+Purgeable"

        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._mode: Mode = "ok"
        self._stopping = False
        self._secrets: dict[str, list[SecretVersion]] = {}
        self._tokens: dict[str, float] = {}
        self._requests: list[RecordedRequest] = []
        self._connections = 0

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

        ca = trustme.CA()
        self._ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._ssl_context)
        tmpdir = tempfile.mkdtemp(prefix="kv-standin-")
        self._cleanup = weakref.finalize(self, shutil.rmtree, tmpdir, ignore_errors=True)
        self.ca_path = str(Path(tmpdir) / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_path)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> KeyVaultStandIn:
        """Start serving; after a stop() the same port is reused so ``url`` stays valid."""
        if self._server is not None:
            raise RuntimeError("KeyVaultStandIn is already running")
        with self._lock:
            self._stopping = False
        server = _Server(("127.0.0.1", self._port or 0), self)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"kv-standin-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket and every open connection; wake hanging handlers."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        server.shutdown()
        server.server_close()
        server.close_connections()
        thread.join(timeout=5)
        self._server = self._thread = None

    def close(self) -> None:
        """stop() and delete the temporary CA file."""
        self.stop()
        self._cleanup()

    def __enter__(self) -> KeyVaultStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._server is not None

    # ------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """The vault URL, with trailing slash: ``https://127.0.0.1:PORT/``."""
        if self._port is None:
            raise RuntimeError("KeyVaultStandIn has not been started")
        return f"https://127.0.0.1:{self._port}/"

    @property
    def identity_endpoint(self) -> str:
        return self.url + IDENTITY_PATH.lstrip("/")

    def env(self) -> dict[str, str]:
        """Variables a client needs: App Service managed identity + CA trust.

        The variables in ``UNSET_ENV_VARS`` must also be absent; see ``patch_env`` and
        ``client_environ``.
        """
        return {
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header,
            "SSL_CERT_FILE": self.ca_path,
            "REQUESTS_CA_BUNDLE": self.ca_path,
        }

    def client_environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A complete environment for a child process: ``base`` (default ``os.environ``)
        without ``UNSET_ENV_VARS``, plus ``env()``."""
        environ = dict(os.environ if base is None else base)
        for name in UNSET_ENV_VARS:
            environ.pop(name, None)
        return {**environ, **self.env()}

    def patch_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Apply ``env()`` and remove ``UNSET_ENV_VARS`` for the current test."""
        for name in UNSET_ENV_VARS:
            monkeypatch.delenv(name, raising=False)
        for name, value in self.env().items():
            monkeypatch.setenv(name, value)

    # ------------------------------------------------------------------ faults

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        if mode not in get_args(Mode):
            raise ValueError(f"unknown mode {mode!r}; expected one of {get_args(Mode)}")
        with self._wake:
            self._mode = mode
            self._wake.notify_all()

    def revoke_tokens(self) -> None:
        """Invalidate every issued token (clients then get a 401 challenge again)."""
        with self._lock:
            self._tokens.clear()

    # ------------------------------------------------------------------ accounting

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def token_requests(self) -> int:
        return sum(r.kind == "token" for r in self.requests)

    @property
    def secret_requests(self) -> int:
        return sum(r.kind == "vault" for r in self.requests)

    @property
    def connections(self) -> int:
        """TLS connections accepted since the last reset_counters()."""
        with self._lock:
            return self._connections

    def reset_counters(self) -> None:
        with self._lock:
            self._requests.clear()
            self._connections = 0

    # ------------------------------------------------------------------ direct state access

    def seed(
        self,
        name: str,
        value: str,
        *,
        enabled: bool = True,
        content_type: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> str:
        """Store a new version without going through HTTP; returns the version id."""
        if not _NAME_RE.fullmatch(name):
            raise ValueError(f"invalid secret name {name!r}")
        return self._add_version(
            SecretVersion(
                name=name,
                version=uuid.uuid4().hex,
                value=value,
                content_type=content_type,
                tags=tags,
                enabled=enabled,
            )
        )

    def versions_of(self, name: str) -> list[SecretVersion]:
        """All versions of ``name``, oldest first (empty if unknown)."""
        with self._lock:
            return list(self._secrets.get(name, []))

    # ------------------------------------------------------------------ dispatch

    def _note_connection(self) -> None:
        with self._lock:
            self._connections += 1

    def _dispatch(self, request: _Request) -> _Response | None:
        """Answer ``request``; None means "drop the connection without an answer"."""
        kind: RequestKind = "token" if request.path == IDENTITY_PATH else "vault"
        record = RecordedRequest(request.method, request.path, request.query, kind)
        with self._lock:
            if self._stopping:  # raced with stop(): behave as if already gone
                return None
            self._requests.append(record)
        response = self._answer(request, kind)
        if response is not None:
            with self._lock:
                record.status = response.status
        return response

    def _answer(self, request: _Request, kind: RequestKind) -> _Response | None:
        if kind == "token":
            return self._issue_token(request)
        if self._mode == "hang":
            self._hang()
            return None
        if self._mode == "error500":
            return _error(500, "InternalServerError", "The stand-in is in error500 mode.")
        if not self._authorized(request):
            return self._challenge(request)
        if "api-version" not in request.query:
            return _error(400, "BadParameter", "The 'api-version' query parameter is missing.")
        for route in self._ROUTES:
            match = route.pattern.fullmatch(request.path)
            if match is None or route.method != request.method:
                continue
            params = {key: unquote(value) for key, value in match.groupdict("").items()}
            name = params.get("name")
            if name is not None and not _NAME_RE.fullmatch(name):
                return _error(
                    400, "BadParameter", f"The request URI contains an invalid name: {name}"
                )
            try:
                with self._lock:
                    return route.handler(self, request, **params)
            except _BadRequest as exc:
                return _error(400, "BadParameter", str(exc))
        return _error(404, "NotFound", f"No route for {request.method} {request.path}")

    def _hang(self) -> None:
        with self._wake:
            self._wake.wait_for(
                lambda: self._mode != "hang" or self._stopping, timeout=self.hang_seconds
            )

    # ------------------------------------------------------------------ identity

    def _issue_token(self, request: _Request) -> _Response:
        if request.method != "GET":
            return _Response(405, {"error": "method_not_allowed"})
        if request.headers.get("X-IDENTITY-HEADER") != self.identity_header:
            return _Response(
                401, {"statusCode": 401, "message": "Missing or wrong X-IDENTITY-HEADER"}
            )
        if request.query.get("api-version") != IDENTITY_API_VERSION:
            return _Response(400, {"statusCode": 400, "message": "Unsupported api-version"})
        resource = request.query.get("resource")
        if not resource:
            return _Response(400, {"statusCode": 400, "message": "Missing resource"})
        token = f"kv-standin.{secrets.token_urlsafe(24)}"
        expires_on = int(time.time()) + self.token_lifetime
        with self._lock:
            self._tokens[token] = expires_on
        return _Response(
            200,
            {
                "access_token": token,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": str(uuid.UUID(int=0)),
            },
        )

    def _authorized(self, request: _Request) -> bool:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        with self._lock:
            expiry = self._tokens.get(token)
        return scheme.lower() == "bearer" and expiry is not None and expiry > time.time()

    def _challenge(self, request: _Request) -> _Response:
        if request.headers.get("Authorization"):
            message = "AKV10032: Invalid bearer token."
        else:
            message = "AKV10000: Request is missing a Bearer or PoP token."
        challenge = (
            f'Bearer authorization="https://login.microsoftonline.com/{self.tenant_id}", '
            f'resource="{VAULT_RESOURCE}"'
        )
        return _Response(
            401,
            {"error": {"code": "Unauthorized", "message": message}},
            {"WWW-Authenticate": challenge},
        )

    # ------------------------------------------------------------------ secrets (lock held)

    def _add_version(self, secret: SecretVersion) -> str:
        with self._lock:
            self._secrets.setdefault(secret.name, []).append(secret)
        return secret.version

    def _find(self, name: str, version: str) -> SecretVersion | _Response:
        versions = self._secrets.get(name, [])
        found = versions[-1:] if not version else [v for v in versions if v.version == version]
        if not found:
            suffix = f" with version '{version}'" if version else ""
            return _error(
                404,
                "SecretNotFound",
                f"A secret with (name/id) {name}{suffix} was not found in this key vault.",
            )
        return found[0]

    def _bundle(
        self, secret: SecretVersion, *, value: bool = True, versioned: bool = True
    ) -> _JSON:
        attributes: _JSON = {
            "enabled": secret.enabled,
            "created": secret.created,
            "updated": secret.updated,
            "recoveryLevel": self.recovery_level,
            "recoverableDays": 90,
        }
        if secret.not_before is not None:
            attributes["nbf"] = secret.not_before
        if secret.expires is not None:
            attributes["exp"] = secret.expires
        secret_id = f"{self.url}secrets/{secret.name}"
        bundle: _JSON = {
            "id": f"{secret_id}/{secret.version}" if versioned else secret_id,
            "attributes": attributes,
        }
        if value:
            bundle["value"] = secret.value
        if secret.content_type is not None:
            bundle["contentType"] = secret.content_type
        if secret.tags is not None:
            bundle["tags"] = secret.tags
        return bundle

    def _page(self, request: _Request, items: list[_JSON]) -> _Response:
        try:
            offset = int(request.query.get("$skiptoken", "0"))
            maxresults = int(request.query.get("maxresults", str(self.page_size)))
        except ValueError as exc:
            raise _BadRequest("Invalid $skiptoken or maxresults.") from exc
        if not 1 <= maxresults <= MAX_PAGE_SIZE or offset < 0:
            raise _BadRequest(f"maxresults must be between 1 and {MAX_PAGE_SIZE}.")
        size = min(maxresults, self.page_size)
        next_link = None
        if offset + size < len(items):
            next_link = (
                f"{self.url}{request.path.lstrip('/')}"
                f"?api-version={request.query['api-version']}"
                f"&$skiptoken={offset + size}&maxresults={maxresults}"
            )
        return _Response(200, {"value": items[offset : offset + size], "nextLink": next_link})

    def _set_secret(self, request: _Request, name: str) -> _Response:
        body = request.json()
        value = body.get("value")
        if not isinstance(value, str):
            raise _BadRequest("The 'value' property is required and must be a string.")
        attributes = body.get("attributes") or {}
        secret = SecretVersion(
            name=name,
            version=uuid.uuid4().hex,
            value=value,
            content_type=body.get("contentType"),
            tags=body.get("tags"),
            enabled=attributes.get("enabled", True),
            not_before=attributes.get("nbf"),
            expires=attributes.get("exp"),
        )
        self._add_version(secret)
        return _Response(200, self._bundle(secret))

    def _get_secret(self, request: _Request, name: str, version: str = "") -> _Response:
        found = self._find(name, version)
        if isinstance(found, _Response):
            return found
        if not found.enabled:
            return _error(
                403,
                "Forbidden",
                "Operation get is not allowed on a disabled secret.",
                inner_code="SecretDisabled",
            )
        return _Response(200, self._bundle(found))

    def _update_secret(self, request: _Request, name: str, version: str = "") -> _Response:
        found = self._find(name, version)
        if isinstance(found, _Response):
            return found
        body = request.json()
        attributes = body.get("attributes") or {}
        if "enabled" in attributes:
            found.enabled = bool(attributes["enabled"])
        if "nbf" in attributes:
            found.not_before = attributes["nbf"]
        if "exp" in attributes:
            found.expires = attributes["exp"]
        if "contentType" in body:
            found.content_type = body["contentType"]
        if "tags" in body:
            found.tags = body["tags"]
        found.updated = int(time.time())
        return _Response(200, self._bundle(found, value=False))

    def _delete_secret(self, request: _Request, name: str) -> _Response:
        found = self._find(name, "")
        if isinstance(found, _Response):
            return found
        del self._secrets[name]
        return _Response(200, self._bundle(found, value=False))

    def _list_secrets(self, request: _Request) -> _Response:
        items = [
            self._bundle(versions[-1], value=False, versioned=False)
            for _, versions in sorted(self._secrets.items())
        ]
        return self._page(request, items)

    def _list_versions(self, request: _Request, name: str) -> _Response:
        items = [self._bundle(v, value=False) for v in self._secrets.get(name, [])]
        return self._page(request, items)

    # Order matters: ".../versions" must win over ".../{version}".
    _ROUTES: ClassVar[tuple[_Route, ...]] = (
        _route("GET", r"/secrets/?", _list_secrets),
        _route("GET", r"/secrets/(?P<name>[^/]+)/versions/?", _list_versions),
        _route("PUT", r"/secrets/(?P<name>[^/]+)/?", _set_secret),
        _route("DELETE", r"/secrets/(?P<name>[^/]+)/?", _delete_secret),
        _route("GET", r"/secrets/(?P<name>[^/]+)(?:/(?P<version>[^/]*))?", _get_secret),
        _route("PATCH", r"/secrets/(?P<name>[^/]+)(?:/(?P<version>[^/]*))?", _update_secret),
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], standin: KeyVaultStandIn) -> None:
        self.standin = standin
        self._open: set[ssl.SSLSocket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def track(self, connection: ssl.SSLSocket, *, add: bool) -> None:
        with self._open_lock:
            if add:
                self._open.add(connection)
            else:
                self._open.discard(connection)

    def close_connections(self) -> None:
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            # socket.socket.shutdown, not SSLSocket.shutdown: the latter drops the SSL object
            # under the handler thread's feet. This just makes its pending read return EOF.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection, socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Handshake failures, resets and broken pipes are expected (timeouts, stop()).
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    server: _Server

    def setup(self) -> None:
        # Headers and body go out as separate writes: without NODELAY, Nagle holds the
        # body until the client's delayed ACK, adding ~40 ms to every response.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # TLS handshake here, in the connection's own thread, not in the accept loop.
        tls = self.server.standin._ssl_context.wrap_socket(
            self.request, server_side=True, do_handshake_on_connect=False
        )
        self.request = tls
        self.server.track(tls, add=True)
        try:
            tls.do_handshake()
        except OSError:
            self._release()
            raise
        self.server.standin._note_connection()
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._release()

    def _release(self) -> None:
        self.server.track(self.request, add=False)
        self.request.close()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = _Request(
            method=self.command,
            path=url.path,
            query={key: values[0] for key, values in parse_qs(url.query).items()},
            headers=self.headers,
            body=self.rfile.read(length) if length else b"",
        )
        response = self.server.standin._dispatch(request)
        if response is None:
            self.close_connection = True
            return
        payload = json.dumps(response.body).encode()
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""
