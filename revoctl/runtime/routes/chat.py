"""``POST /v1/chat/completions``: OpenAI's API, streamed or not, through the gateway."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from revoctl.runtime.gateway import Exchange, Gateway, HttpError, relay
from revoctl.runtime.providers import usage_of

MAX_BODY_BYTES = 4 * 1024 * 1024


async def chat_completions(request: Request) -> Response:
    started = time.perf_counter()
    gateway = Gateway.of(request)
    exchange: Exchange | None = None
    try:
        body = await read_json(request)
        user = body.get("user") if isinstance(body, dict) else None
        caller = await gateway.caller(request, user if isinstance(user, str) else None)
        exchange = gateway.exchange(
            body,
            caller,
            route=request.url.path,
            request_id=request.scope["state"]["request_id"],
            started=started,
        )
        request.scope["state"]["model"] = exchange.model
        return await answer(gateway, exchange)
    except HttpError as error:
        return error_response(gateway, exchange, error)


async def answer(gateway: Gateway, exchange: Exchange) -> Response:
    """Charge, call, settle; a stream relays its chunks as they come."""
    await gateway.charge(exchange)
    try:
        if exchange.request.get("stream"):
            stream, first = await gateway.open_stream(exchange)
        else:
            response = await gateway.complete(exchange)
    except HttpError:
        await gateway.refund_all(exchange)  # nothing was answered: nothing is owed
        raise
    if exchange.request.get("stream"):
        headers = dict(exchange.charge.headers())
        headers["x-revoctl-overhead-ms"] = str(exchange.overhead_ms())
        return StreamingResponse(
            relay(gateway, exchange, stream, first),
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache"},
        )
    usage = usage_of(response)
    await gateway.settle(exchange, usage)
    gateway.record(exchange, 200, usage, method="POST", path=exchange.route)
    headers = dict(exchange.charge.headers())
    headers["x-revoctl-overhead-ms"] = str(exchange.overhead_ms())
    return JSONResponse(response, headers=headers)


def error_response(gateway: Gateway, exchange: Exchange | None, error: HttpError) -> Response:
    if exchange is not None:
        gateway.record(exchange, error.status, None, method="POST", path=exchange.route)
    return JSONResponse(error.body(), status_code=error.status, headers=dict(error.headers))


async def read_json(request: Request) -> Any:
    """The body as JSON, bounded in size.

    :raises HttpError: 413 when it is too large, 400 when it is not JSON.
    """
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > MAX_BODY_BYTES:
            raise HttpError(413, f"the body is limited to {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise HttpError(400, "the body is not valid JSON") from None
