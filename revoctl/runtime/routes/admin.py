"""``/admin/*``: gateway keys and breakers over HTTP, behind the admin key.

Each route is the CLI command of the same name, as one core call: ``POST /admin/keys`` is
``revoctl keys create``, ``GET /admin/keys`` ``keys list``, ``DELETE /admin/keys/{name}``
``keys revoke``, ``GET /admin/keys/{name}/spend`` ``keys spend``, ``POST
/admin/keys/{name}/rotate`` ``keys rotate``, ``POST /admin/breakers/{name}/trip`` and
``.../reset`` ``breakers trip`` and ``reset``. Answers are the CLI's JSON documents; the
actor of every change is ``admin:<fingerprint>`` (`revoctl.runtime.admin`). Each request
has its ``request_logs`` row, like every request the gateway answers.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from revoctl.runtime.admin import BreakerTrip, KeyCreate, KeyRotate, admin_actor, core_errors
from revoctl.runtime.bodies import checked, read_json
from revoctl.runtime.gateway import Gateway
from revoctl.runtime.identity import Caller


async def create_key(request: Request) -> Response:
    """A new gateway key, its value answered once."""
    gateway, actor = await _admitted(request)
    body = checked(KeyCreate, await read_json(request, gateway.config.max_body_bytes))
    with core_errors():
        issued = await gateway.services.accounts.create(
            body.name, tier=body.tier, expires_in=body.expires_in, actor=actor
        )
    return _answer(request, actor, issued)


async def list_keys(request: Request) -> Response:
    """Every key with its tier and spend, never a key."""
    gateway, actor = await _admitted(request)
    with core_errors():
        entries = await gateway.services.accounts.list_keys()
    return _answer(request, actor, entries)


async def revoke_key(request: Request) -> Response:
    """Revoke a key on every instance."""
    gateway, actor = await _admitted(request)
    with core_errors():
        revoked = await gateway.services.accounts.revoke(_name(request), actor=actor)
    return _answer(request, actor, revoked)


async def key_spend(request: Request) -> Response:
    """A key's spend in its current budget period."""
    gateway, actor = await _admitted(request)
    with core_errors():
        spend = await gateway.services.accounts.spend(_name(request))
    return _answer(request, actor, spend)


async def rotate_key(request: Request) -> Response:
    """A new value for a key, answered once; the old one works for ``overlap`` seconds."""
    gateway, actor = await _admitted(request)
    body = checked(KeyRotate, await _optional_json(request, gateway))
    with core_errors():
        issued = await gateway.services.accounts.rotate(
            _name(request), overlap_seconds=body.overlap, actor=actor
        )
    return _answer(request, actor, issued)


async def trip_breaker(request: Request) -> Response:
    """Force a breaker open in every process, until reset or for ``for`` seconds."""
    gateway, actor = await _admitted(request)
    body = checked(BreakerTrip, await _optional_json(request, gateway))
    with core_errors():
        status = await gateway.services.breakers.trip(
            _name(request), reason=body.reason, for_seconds=body.for_seconds, actor=actor
        )
    return _answer(request, actor, status)


async def reset_breaker(request: Request) -> Response:
    """Close a breaker in every process: counters and any trip cleared."""
    gateway, actor = await _admitted(request)
    with core_errors():
        [status] = await gateway.services.breakers.reset(_name(request), actor=actor)
    return _answer(request, actor, status)


async def keys(request: Request) -> Response:
    """``/admin/keys``: one route for both methods, so a 405 there lists both in ``Allow``."""
    return await (create_key if request.method == "POST" else list_keys)(request)


ROUTES = [
    Route("/admin/keys", keys, methods=["GET", "POST"]),
    Route("/admin/keys/{name}", revoke_key, methods=["DELETE"]),
    Route("/admin/keys/{name}/spend", key_spend, methods=["GET"]),
    Route("/admin/keys/{name}/rotate", rotate_key, methods=["POST"]),
    Route("/admin/breakers/{name}/trip", trip_breaker, methods=["POST"]),
    Route("/admin/breakers/{name}/reset", reset_breaker, methods=["POST"]),
]


async def _admitted(request: Request) -> tuple[Gateway, str]:
    """The gateway and the admin actor, once the admin key is checked.

    :raises GatewayError: 404 when the admin API is off, 401 without the admin key.
    """
    gateway = Gateway.of(request)
    return gateway, await admin_actor(gateway, request)


def _name(request: Request) -> str:
    name: str = request.path_params["name"]
    return name


async def _optional_json(request: Request, gateway: Gateway) -> Any:
    """The body as JSON; no body at all is ``{}`` (every field has its default)."""
    if not request.headers.get("content-length", "0").strip("0") and (
        "transfer-encoding" not in request.headers
    ):
        return {}
    return await read_json(request, gateway.config.max_body_bytes)


def _answer(request: Request, actor: str, document: Any) -> Response:
    """``document`` as JSON, 200, and the request's row (its key: the admin actor)."""
    client = request.client.host if request.client else None
    Gateway.of(request).usage.record_request(request, Caller(actor, None, client), 200)
    return JSONResponse(document)
