"""``POST /generate``: the design notes' simple form (a prompt or messages, a model, max_tokens).

The same path as a chat completion (never streamed), the answer reshaped as ``text``.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from revoctl.runtime.bodies import read_json
from revoctl.runtime.errors import GatewayError
from revoctl.runtime.gateway import Gateway
from revoctl.runtime.providers import usage_of


async def generate(request: Request) -> Response:
    """One answer to a prompt, as ``{"id", "model", "text", "finish_reason", "usage"}``.

    :raises GatewayError: as ``POST /v1/chat/completions``; 400 unless exactly one of
        ``prompt`` and ``messages`` is given.
    """
    started = time.perf_counter()
    gateway = Gateway.of(request)
    body = _as_chat(await read_json(request))
    caller = await gateway.identify(request, body)
    exchange = gateway.exchange(request, caller, body, started)
    await gateway.charge(exchange)
    answer = await gateway.routing.complete(exchange)
    usage = usage_of(answer)
    choice = (answer.get("choices") or [{}])[0]
    document = {
        "id": answer.get("id"),
        "model": answer.get("model"),
        "text": (choice.get("message") or {}).get("content") or "",
        "finish_reason": choice.get("finish_reason"),
        "usage": usage,
    }
    settle = BackgroundTask(gateway.settle, exchange, usage)
    return JSONResponse(document, headers=exchange.headers(), background=settle)


def _as_chat(body: Any) -> dict[str, Any]:
    """``{"prompt"}`` or ``{"messages"}`` as a chat request (never streamed).

    :raises GatewayError: 400 unless exactly one of them is given.
    """
    if not isinstance(body, dict):
        raise GatewayError(400, "the body must be a JSON object")
    prompt, messages = body.get("prompt"), body.get("messages")
    if (prompt is None) == (messages is None):
        raise GatewayError(400, "give exactly one of 'prompt' and 'messages'")
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt:
            raise GatewayError(400, "'prompt' must be non-empty text")
        messages = [{"role": "user", "content": prompt}]
    chat = {
        key: value
        for key, value in body.items()
        if key in ("model", "max_tokens", "temperature", "top_p", "stop", "user")
    }
    return {**chat, "messages": messages, "stream": False}
