"""``POST /generate``: the design notes' simple form (a prompt or messages, a model, max_tokens).

The same path as a chat completion (never streamed), the answer reshaped as ``text``.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from revoctl.runtime.bodies import checked, read_json
from revoctl.runtime.gateway import Gateway
from revoctl.runtime.providers import usage_of
from revoctl.runtime.schemas import GenerateRequest


async def generate(request: Request) -> Response:
    """One answer to a prompt, as ``{"id", "model", "text", "finish_reason", "usage"}``.

    :raises GatewayError: as ``POST /v1/chat/completions``; 400 unless exactly one of
        ``prompt`` and ``messages`` is given.
    """
    started = time.perf_counter()
    gateway = Gateway.of(request)
    body = await read_json(request, gateway.config.max_body_bytes)
    caller = await gateway.identify(request, body)
    body = _as_chat(body)
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

    :raises GatewayError: 400 for a body that is not a `GenerateRequest`.
    """
    asked = checked(GenerateRequest, body)
    messages = (
        body["messages"] if asked.prompt is None else [{"role": "user", "content": asked.prompt}]
    )
    chat = {
        key: value
        for key, value in body.items()
        if key in ("model", "max_tokens", "temperature", "top_p", "stop", "user")
    }
    return {**chat, "messages": messages, "stream": False}
