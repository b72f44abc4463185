"""``GET /v1/models``: the configured models, as OpenAI lists them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from revoctl.runtime.gateway import Gateway, HttpError
from revoctl.runtime.routes.chat import error_response


async def list_models(request: Request) -> Response:
    gateway = Gateway.of(request)
    try:
        await gateway.caller(request, None)
    except HttpError as error:
        return error_response(gateway, None, error)
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": model.provider}
        for name, model in sorted(gateway.models.items())
    ]
    return JSONResponse({"object": "list", "data": data})
