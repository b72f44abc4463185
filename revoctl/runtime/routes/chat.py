"""``POST /v1/chat/completions``: OpenAI's API, streamed or not, through the gateway."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from revoctl.runtime.gateway import Exchange, Gateway, HttpError, relay
from revoctl.runtime.providers import ChatResponse, usage_of

MAX_BODY_BYTES = 4 * 1024 * 1024


async def chat_completions(request: Request) -> Response:
    started = time.perf_counter()
    gateway = Gateway.of(request)
    exchange: Exchange | None = None
    try:
        exchange = await start_exchange(gateway, request, await read_json(request), started)
        if exchange.request.get("stream"):
            return await answer_streamed(gateway, exchange)
        response = await answer_once(gateway, exchange)
    except HttpError as error:
        return error_response(gateway, exchange, error)
    return JSONResponse(
        response, headers=answer_headers(exchange), background=settle_later(gateway, exchange)
    )


async def start_exchange(gateway: Gateway, request: Request, body: Any, started: float) -> Exchange:
    """Who asks and what: the caller (a key when required) and a checked chat request.

    :raises HttpError: 401 without a valid key, 400 for a malformed body, 404 for a model
        that is not configured.
    """
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
    return exchange


async def answer_once(gateway: Gateway, exchange: Exchange) -> ChatResponse:
    """Charge and call for one whole answer; `settle_later` settles and records it.

    :raises HttpError: a limit denies it (nothing charged), or no model answers (the charge
        is given back: nothing was answered, nothing is owed).
    """
    await gateway.charge(exchange)
    try:
        return await gateway.complete(exchange)
    except HttpError:
        await gateway.refund_all(exchange)
        raise


def settle_later(gateway: Gateway, exchange: Exchange) -> BackgroundTask:
    """The refund of what the answer did not use, and its usage row, once the response is
    sent: the caller does not wait for the store's round trip. The rate-limit headers show
    the key as charged (at the request's bound), which is never more than it holds."""

    async def settle() -> None:
        usage = usage_of(exchange.answer or {})
        await gateway.settle(exchange, usage)
        gateway.record(exchange, 200, usage, method="POST", path=exchange.route)

    return BackgroundTask(settle)


async def answer_streamed(gateway: Gateway, exchange: Exchange) -> Response:
    """Charge and open the stream; its chunks are relayed as they come, and it settles at its end.

    :raises HttpError: as `answer_once`, up to the first chunk.
    """
    await gateway.charge(exchange)
    try:
        stream, first = await gateway.open_stream(exchange)
    except HttpError:
        await gateway.refund_all(exchange)
        raise
    return StreamingResponse(
        relay(gateway, exchange, stream, first),
        media_type="text/event-stream",
        headers={**answer_headers(exchange), "cache-control": "no-cache"},
    )


def answer_headers(exchange: Exchange) -> dict[str, str]:
    """The rate-limit headers of every charged rule and the gateway's own time."""
    headers = dict(exchange.charge.headers())
    headers["x-revoctl-overhead-ms"] = str(exchange.overhead_ms())
    return headers


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
