"""Who may see ``/status`` and press its buttons: a signed session cookie and a CSRF token.

A browser sends no ``Authorization`` header, and an ``EventSource`` no header at all, so the
page has a login form (``/status/login``) that takes the admin key and sets a cookie:

- the cookie (`COOKIE`) holds a session: its expiry and its CSRF token, as base64url JSON,
  and an HMAC-SHA256 of that text under a key derived from the admin key (`signing_key`).
  No state is kept on the server: every worker and instance with the same admin key reads
  the same sessions, and rotating the admin key ends them all;
- it is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends
  it), ``Path=/`` (``/status.json`` is not under ``/status/``), and ``Secure`` when the
  request came over https;
- a button's ``POST`` must carry the session's CSRF token in `CSRF_HEADER` (the page has it
  in a ``<meta>`` tag): compared with `hmac.compare_digest`, like the signature.

Without ``[gateway] admin_key`` there is no login and no button: the page is read-only and
served to loopback clients only (the client address is the one ``trusted_proxies`` allow,
so a remote client behind a local proxy is not taken for this machine).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from revoctl.core.redaction import register_secret
from revoctl.core.references import resolve_text
from revoctl.runtime.admin import core_errors, fingerprint
from revoctl.runtime.errors import GatewayError

if TYPE_CHECKING:
    from starlette.requests import Request

    from revoctl.runtime.gateway import Gateway

COOKIE = "revoctl_status"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 8 * 3600
_CONTEXT = b"revoctl status page session v1"


@dataclass(frozen=True)
class Session:
    """A signed-in browser: its CSRF token and when the session ends (epoch seconds)."""

    csrf: str
    expires: float


@dataclass(frozen=True)
class Viewer:
    """Who looks at the page: ``session`` None means read-only (no admin key configured)."""

    session: Session | None
    actor: str | None
    """``admin:<fingerprint>`` when signed in: the actor of a trip or reset."""

    @property
    def read_only(self) -> bool:
        return self.session is None


def signing_key(admin_key: str) -> bytes:
    """The key sessions are signed with: derived from the admin key, never the key itself."""
    return hmac.new(admin_key.encode(), _CONTEXT, hashlib.sha256).digest()


def issue(admin_key: str, now: float | None = None) -> tuple[str, Session]:
    """A new session (a fresh CSRF token) and its cookie value."""
    now = time.time() if now is None else now
    session = Session(csrf=secrets.token_urlsafe(32), expires=round(now + SESSION_SECONDS))
    body = _b64(json.dumps({"csrf": session.csrf, "exp": session.expires}).encode())
    return f"{body}.{_sign(admin_key, body)}", session


def read(cookie: str | None, admin_key: str, now: float | None = None) -> Session | None:
    """The session ``cookie`` holds, when its signature is good and it has not expired."""
    if not cookie or cookie.count(".") != 1:
        return None
    body, signature = cookie.split(".")
    if not hmac.compare_digest(signature.encode(), _sign(admin_key, body).encode()):
        return None
    try:
        fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        session = Session(csrf=str(fields["csrf"]), expires=float(fields["exp"]))
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return session if session.expires > (time.time() if now is None else now) else None


def csrf_ok(session: Session, presented: str | None) -> bool:
    """Whether ``presented`` is the session's CSRF token (in constant time)."""
    return presented is not None and hmac.compare_digest(presented.encode(), session.csrf.encode())


def cookie_header(value: str, *, secure: bool, max_age: int = SESSION_SECONDS) -> str:
    """The ``Set-Cookie`` value for the session cookie (``max_age`` 0 clears it)."""
    flags = f"Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    return f"{COOKIE}={value}; {flags}{'; Secure' if secure else ''}"


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def is_loopback(request: Request) -> bool:
    """Whether the client (as ``trusted_proxies`` allow it to be known) is this machine."""
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def admin_key_of(gateway: Gateway) -> str:
    """The admin key ("" when none is configured), read through the secret manager.

    :raises GatewayError: 503 when its secret cannot be read.
    """
    template = gateway.config.admin_key
    if not template:
        return ""
    with core_errors():
        admin_key = await resolve_text(template, gateway.services.read_secret)
    register_secret(admin_key)
    return admin_key


async def viewer(gateway: Gateway, request: Request) -> Viewer | None:
    """Who looks: a signed-in viewer, a read-only one (no admin key, a loopback client), or
    None when a login is needed.

    :raises GatewayError: 403 for a remote client when no admin key is set; 503 when the
        admin key's secret cannot be read.
    """
    request.state.caller = None  # never a gateway key's caller: a refusal asks no one
    admin_key = await admin_key_of(gateway)
    if not admin_key:
        if is_loopback(request):
            return Viewer(None, None)
        raise GatewayError(
            403,
            "the status page is served to this machine only while [gateway] admin_key is unset",
            code="status_local_only",
        )
    session = read(request.cookies.get(COOKIE), admin_key)
    if session is None:
        return None
    return Viewer(session, f"admin:{fingerprint(admin_key)}")


def login_ok(admin_key: str, presented: str) -> bool:
    """Whether ``presented`` is the admin key (in constant time; "" never is)."""
    return bool(admin_key) and hmac.compare_digest(presented.encode(), admin_key.encode())


def _sign(admin_key: str, body: str) -> str:
    return _b64(hmac.new(signing_key(admin_key), body.encode(), hashlib.sha256).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
