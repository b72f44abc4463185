"""``POST /v1/chat/completions``: OpenAI's API, streamed or not, through the gateway.

The route is the request's whole path, top to bottom: read, identify, check, charge,
route, answer (or relay), settle. A refusal anywhere is raised and rendered by the app's
handler (`revoctl.runtime.errors`), which gives back the charge and writes the row.

A stream is settled at its end however it ends (`relay`); should the relay never get
there (the client left before its first chunk was sent, or while one was being sent), the
response's background task settles it without usage, so its parallel slot is freed at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from revoctl.runtime.bodies import read_json
from revoctl.runtime.errors import GatewayError
from revoctl.runtime.exchange import Exchange
from revoctl.runtime.gateway import Gateway
from revoctl.runtime.providers import ChatChunk, ProviderStreamError, Usage, usage_of
from revoctl.runtime.response_cache import CACHE_HEADER, answered_from_cache
from revoctl.runtime.routing import close_stream

CLIENT_GONE = 499
"""The status of a stream whose client left before the relay could end it."""


async def chat_completions(request: Request) -> Response:
    """One chat completion, whole or streamed (``stream``), from the model or a fallback.

    :raises GatewayError: 413/400 for the body, 401 without a valid key, 404 for an unknown
        model, 429 when a limit denies it, 4xx/5xx when no model answers.
    """
    started = time.perf_counter()
    gateway = Gateway.of(request)
    body = await read_json(request, gateway.config.max_body_bytes)
    caller = await gateway.identify(request, body)
    exchange = gateway.exchange(request, caller, body, started)
    cache_key = gateway.cache.key_for(exchange)  # None: not cacheable (`response_cache`)
    if cache_key is not None:
        cached = await gateway.cache.lookup(exchange, cache_key)
        if cached is not None:  # a hit: nothing charged, no provider called
            return answered_from_cache(gateway.usage, exchange, cached)
    await gateway.charge(exchange)
    if exchange.request.get("stream"):
        stream, first = await gateway.routing.open_stream(exchange)
        return StreamingResponse(
            relay(gateway, exchange, stream, first),
            media_type="text/event-stream",
            headers={**exchange.headers(), "cache-control": "no-cache"},
            background=BackgroundTask(gateway.settle_soon, exchange, None, CLIENT_GONE),
        )
    answer = await gateway.routing.complete(exchange)
    # Settled once the response is sent: the caller does not wait for the store's round
    # trip. The headers show the key as charged at the request's bound, never more than it holds.
    settle = BackgroundTask(gateway.settle, exchange, usage_of(answer))
    stored = cache_key is not None and await gateway.cache.keep(exchange, cache_key, answer)
    headers = exchange.headers()
    if stored:
        headers[CACHE_HEADER] = "miss"
    return JSONResponse(answer, headers=headers, background=settle)


async def relay(
    gateway: Gateway, exchange: Exchange, stream: AsyncIterator[ChatChunk], first: ChatChunk
) -> AsyncIterator[bytes]:
    """The client's SSE stream: chunks relabelled with the model that answers, the usage
    chunk only when the client asked for it, ``[DONE]`` at the end; a failure after the
    first chunk ends the stream with an error event. Settled at its end, however it ends."""
    served_by = exchange.served_by or exchange.model
    wants_usage = bool((exchange.request.get("stream_options") or {}).get("include_usage"))
    usage: Usage | None = None
    status = 200
    waited = 0.0
    try:
        chunk: ChatChunk | None = first
        while chunk is not None:
            found = usage_of(chunk)
            if found is not None:
                usage = found
            if chunk.get("choices") or wants_usage:
                chunk["model"] = served_by
                yield b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
            started = time.perf_counter()
            try:
                chunk = await anext(stream)
            except StopAsyncIteration:
                chunk = None
            waited += time.perf_counter() - started
        yield b"data: [DONE]\n\n"
    except ProviderStreamError as exc:
        status = 502
        error = GatewayError(
            502, f"the stream from {served_by!r} broke: {exc}", kind="server_error"
        )
        yield b"data: " + json.dumps(error.body()).encode() + b"\n\n"
    finally:
        exchange.provider_seconds += waited
        gateway.settle_soon(exchange, usage, status)  # first: the close may be cancelled
        await close_stream(stream)
