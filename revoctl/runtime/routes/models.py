"""``GET /v1/models``: the configured models the caller may call, as OpenAI lists them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from revoctl.runtime.gateway import Gateway


async def list_models(request: Request) -> Response:
    """Every configured model the caller's tier allows, with the caller's rate-limit
    headers (read, not charged).

    :raises GatewayError: 401 when keys are required and missing, 403 for a key whose tier
        is not configured.
    """
    gateway = Gateway.of(request)
    caller = await gateway.identify(request, None)
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": model.providers()[0]}
        for name, model in sorted(gateway.models.items())
        if caller.allows(name)
    ]
    headers = await gateway.rate_limit_headers(caller)
    gateway.usage.record_request(request, caller, 200)
    return JSONResponse({"object": "list", "data": data}, headers=dict(headers))
