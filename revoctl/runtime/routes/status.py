"""``/status``: the live status page, its data, its login and its two buttons.

- ``GET /status``: the page (HTML; its CSS and script come from ``/status/assets/``, shipped
  in the package, nothing fetched from elsewhere), with the document of ``/status.json``
  embedded so it shows at once; the script then follows ``/status/events``.
- ``GET /status.json``: `revoctl.core.status.fleet_status`, read now, with ``served_by``.
- ``GET /status/events``: server-sent events, one ``data:`` line of that document per
  update of this instance's `StatusFeed` (every `TICK_SECONDS`); ended as the server shuts
  down (`revoctl.runtime.draining`).
- ``GET|POST /status/login``, ``POST /status/logout``: the session cookie
  (`revoctl.runtime.status_auth`); ``POST /status/breakers/{name}/trip|reset``: the
  ``breakers trip`` and ``reset`` calls, with the session and its CSRF token.

With ``[gateway] admin_key`` set, everything but the login and the assets needs the
session (the page redirects to the login, the rest answer 401); without it the page is
read-only and answered to loopback clients only, and the login and the buttons are 404.
No business logic here: the document is core's, the buttons are the CLI's calls.
"""

from __future__ import annotations

import json
import weakref
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from revoctl.runtime import status_auth
from revoctl.runtime.admin import MAX_REASON, core_errors
from revoctl.runtime.draining import EventStream
from revoctl.runtime.errors import GatewayError
from revoctl.runtime.gateway import Gateway
from revoctl.runtime.identity import Caller
from revoctl.runtime.status_feed import StatusFeed

ASSETS = {"status.css": "text/css; charset=utf-8", "status.js": "text/javascript; charset=utf-8"}
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
_FEEDS: weakref.WeakKeyDictionary[Gateway, StatusFeed] = weakref.WeakKeyDictionary()


def feed_of(gateway: Gateway) -> StatusFeed:
    """This instance's feed, made on first use."""
    feed = _FEEDS.get(gateway)
    if feed is None:
        feed = _FEEDS[gateway] = StatusFeed(gateway.services, gateway.instance.name)
    return feed


def asset(name: str) -> str:
    """A file shipped in ``revoctl/runtime/status_page/``."""
    return (resources.files("revoctl.runtime") / "status_page" / name).read_text("utf-8")


def embedded_json(document: Any) -> str:
    """``document`` as JSON that cannot end the ``<script>`` element it sits in."""
    text = json.dumps(document, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(document: dict[str, Any], viewer: status_auth.Viewer) -> str:
    """The page: ``document`` embedded, the CSRF token in a ``<meta>`` (none when read-only)."""
    return Template(asset("page.html")).substitute(
        csrf="" if viewer.session is None else viewer.session.csrf,
        mode="read-only" if viewer.read_only else "admin",
        data=embedded_json(document),
    )


def render_login(error: str = "") -> str:
    """The login form, with ``error`` (escaped) when the last attempt failed."""
    from html import escape

    notice = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return Template(asset("login.html")).substitute(error=notice)


async def status_page(request: Request) -> Response:
    """The page; without a session (an admin key being set), the login."""
    gateway = Gateway.of(request)
    viewer = await status_auth.viewer(gateway, request)
    if viewer is None:
        return RedirectResponse("/status/login", status_code=303)
    document = await feed_of(gateway).snapshot()
    return Response(render_page(document, viewer), media_type="text/html", headers=PAGE_HEADERS)


async def status_json(request: Request) -> Response:
    """The page's data, read now."""
    gateway = Gateway.of(request)
    await _viewer(gateway, request)
    return JSONResponse(await feed_of(gateway).snapshot(), headers={"cache-control": "no-store"})


async def status_events(request: Request) -> Response:
    """Server-sent events: the document at each update, a comment as a heartbeat."""
    gateway = Gateway.of(request)
    await _viewer(gateway, request)
    feed = feed_of(gateway)

    async def events() -> Any:
        with EventStream() as stream:
            yield "retry: 1000\n\n"
            async for document in feed.updates(stream.closed):
                yield ": alive\n\n" if document is None else f"data: {json.dumps(document)}\n\n"

    headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


async def login(request: Request) -> Response:
    """The form (GET); the admin key checked, the session cookie set (POST)."""
    gateway = Gateway.of(request)
    request.state.caller = None
    admin_key = await status_auth.admin_key_of(gateway)
    if not admin_key:
        raise GatewayError(404, f"{request.method} {request.url.path}: Not Found", code="not_found")
    if request.method == "GET":
        return Response(render_login(), media_type="text/html", headers=PAGE_HEADERS)
    form = await _form(request, gateway.config.max_body_bytes)
    if not status_auth.login_ok(admin_key, form.get("admin_key", "")):
        _row(request, None, 401, "invalid_admin_key")
        page = render_login("That is not the admin key.")
        return Response(page, status_code=401, media_type="text/html", headers=PAGE_HEADERS)
    cookie, _ = status_auth.issue(admin_key)
    answer = RedirectResponse("/status", status_code=303)
    secure = status_auth.is_https(request)
    answer.headers.append("set-cookie", status_auth.cookie_header(cookie, secure=secure))
    return answer


async def logout(request: Request) -> Response:
    """The session cookie cleared; back to the login."""
    answer = RedirectResponse("/status/login", status_code=303)
    secure = status_auth.is_https(request)
    answer.headers.append("set-cookie", status_auth.cookie_header("", secure=secure, max_age=0))
    return answer


async def breaker_action(request: Request) -> Response:
    """``trip`` (``{"reason"}`` optional) or ``reset`` a breaker: the session and its CSRF
    token required."""
    gateway = Gateway.of(request)
    viewer = await _viewer(gateway, request)
    if viewer.session is None:  # read-only: no admin key, so no button
        raise GatewayError(404, f"{request.method} {request.url.path}: Not Found", code="not_found")
    if not status_auth.csrf_ok(viewer.session, request.headers.get(status_auth.CSRF_HEADER)):
        raise GatewayError(403, "the page's CSRF token is missing or wrong", code="invalid_csrf")
    name, action = request.path_params["name"], request.path_params["action"]
    breakers = gateway.services.breakers
    with core_errors():
        if action == "trip":
            reason = (await _reason(request, gateway))[:MAX_REASON] or "from the status page"
            done = await breakers.trip(name, reason=reason, actor=viewer.actor)
        else:
            [done] = await breakers.reset(name, actor=viewer.actor)
    _row(request, viewer.actor, 200)
    return JSONResponse(done)


async def assets(request: Request) -> Response:
    """The page's CSS and script."""
    name = request.path_params["name"]
    if name not in ASSETS:
        raise GatewayError(404, f"{request.method} {request.url.path}: Not Found", code="not_found")
    return Response(
        asset(name), media_type=ASSETS[name], headers={"cache-control": "no-cache", **_NOSNIFF}
    )


_NOSNIFF = {"x-content-type-options": "nosniff"}

ROUTES = [
    Route("/status", status_page, methods=["GET"]),
    Route("/status.json", status_json, methods=["GET"]),
    Route("/status/events", status_events, methods=["GET"]),
    Route("/status/login", login, methods=["GET", "POST"]),
    Route("/status/logout", logout, methods=["POST"]),
    Route("/status/breakers/{name}/{action:str}", breaker_action, methods=["POST"]),
    Route("/status/assets/{name}", assets, methods=["GET"]),
]


async def _viewer(gateway: Gateway, request: Request) -> status_auth.Viewer:
    """The viewer of a data request or a button.

    :raises GatewayError: 401 without a session (an admin key being set), 404 for an unknown
        action, 403 for a remote client when no admin key is set.
    """
    action = request.path_params.get("action")
    if action is not None and action not in ("trip", "reset"):
        raise GatewayError(404, f"{request.method} {request.url.path}: Not Found", code="not_found")
    viewer = await status_auth.viewer(gateway, request)
    if viewer is None:
        raise GatewayError(
            401, "sign in first: POST the admin key to /status/login", code="login_required"
        )
    return viewer


async def _form(request: Request, max_bytes: int) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body, at most ``max_bytes`` long."""
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > max_bytes:
            raise GatewayError(413, "the form is too large", code="request_too_large")
    fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
    return {key: values[0] for key, values in fields.items()}


async def _reason(request: Request, gateway: Gateway) -> str:
    """The ``reason`` of a trip's JSON body, if it has one."""
    from revoctl.runtime.bodies import read_json

    if request.headers.get("content-length", "0") in ("", "0"):
        return ""
    body = await read_json(request, gateway.config.max_body_bytes)
    reason = body.get("reason") if isinstance(body, dict) else None
    return " ".join(reason.split()) if isinstance(reason, str) else ""


def _row(request: Request, actor: str | None, status: int, code: str | None = None) -> None:
    """The request's ``request_logs`` row (a button's or a refused login)."""
    client = request.client.host if request.client else None
    caller = Caller(actor, None, client) if actor else None
    Gateway.of(request).usage.record_request(request, caller, status, code)
