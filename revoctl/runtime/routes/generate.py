"""``POST /generate``: the design notes' simple form (a prompt or messages, a model, max_tokens)."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from revoctl.runtime.gateway import Exchange, Gateway, HttpError
from revoctl.runtime.providers import usage_of
from revoctl.runtime.routes.chat import (
    answer_headers,
    answer_once,
    error_response,
    read_json,
    settle_later,
    start_exchange,
)


async def generate(request: Request) -> Response:
    started = time.perf_counter()
    gateway = Gateway.of(request)
    exchange: Exchange | None = None
    try:
        body = await read_json(request)
        exchange = await start_exchange(gateway, request, _as_chat(body), started)
        response = await answer_once(gateway, exchange)
    except HttpError as error:
        return error_response(gateway, exchange, error)
    choice = (response.get("choices") or [{}])[0]
    document = {
        "id": response.get("id"),
        "model": response.get("model"),
        "text": (choice.get("message") or {}).get("content") or "",
        "finish_reason": choice.get("finish_reason"),
        "usage": usage_of(response),
    }
    return JSONResponse(
        document, headers=answer_headers(exchange), background=settle_later(gateway, exchange)
    )


def _as_chat(body: Any) -> dict[str, Any]:
    """``{"prompt"}`` or ``{"messages"}`` as a chat request (never streamed).

    :raises HttpError: 400 unless exactly one of them is given.
    """
    if not isinstance(body, dict):
        raise HttpError(400, "the body must be a JSON object")
    prompt, messages = body.get("prompt"), body.get("messages")
    if (prompt is None) == (messages is None):
        raise HttpError(400, "give exactly one of 'prompt' and 'messages'")
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt:
            raise HttpError(400, "'prompt' must be non-empty text")
        messages = [{"role": "user", "content": prompt}]
    chat = {
        key: value
        for key, value in body.items()
        if key in ("model", "max_tokens", "temperature", "top_p", "stop", "user")
    }
    return {**chat, "messages": messages, "stream": False}
