"""``GET /openapi.json``: the gateway's OpenAPI document (`revoctl.runtime.openapi`), keyless."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from revoctl.runtime.gateway import Gateway
from revoctl.runtime.openapi import openapi_document


async def openapi(request: Request) -> Response:
    """This gateway's document: its models, whether its routes need a key, its admin API."""
    gateway = Gateway.of(request)
    keys_required = gateway.config.auth == "keys"
    admin = bool(gateway.config.admin_key)
    return JSONResponse(openapi_document(tuple(sorted(gateway.models)), keys_required, admin))
