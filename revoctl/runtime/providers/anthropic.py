"""Anthropic's messages API behind the gateway's OpenAI format, translated both ways.

Requests: system (and developer) messages become ``system``; user and assistant messages keep
their text; ``max_tokens`` (required by Anthropic) is the request's ``max_completion_tokens``
or ``max_tokens``, else the gateway's default; ``stop`` becomes ``stop_sequences``; ``user``
becomes ``metadata.user_id``; ``temperature`` and ``top_p`` pass as they are. Tools, tool
choices, assistant tool calls and tool results are translated too
(`revoctl.runtime.providers._anthropic_tools`). What Anthropic cannot do as asked (several
choices, images, logprobs, response formats, tools other than functions, ...) is refused as
the caller's fault rather than silently answered differently; penalties and seeds, which
only tune sampling, are dropped. Anthropic has no embeddings: `AnthropicProvider.embed`
refuses.

Answers and stream events become OpenAI's response and chunks, with ``finish_reason`` mapped
(``end_turn``/``stop_sequence`` -> ``stop``, ``max_tokens`` -> ``length``, ``tool_use`` ->
``tool_calls``), ``tool_use`` blocks as ``tool_calls``, and usage as ``prompt_tokens``
(input tokens, cache reads and writes included, as OpenAI counts them),
``completion_tokens`` and ``total_tokens``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from revoctl.core.gateway.settings import ProviderConfig
from revoctl.runtime.providers import _anthropic_tools as tools
from revoctl.runtime.providers._anthropic_tools import refuse
from revoctl.runtime.providers._http import HttpProvider, error_for_status, upstream_message
from revoctl.runtime.providers.base import (
    ApiKey,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    Usage,
)

API_VERSION = "2023-06-01"
"""The ``anthropic-version`` this translation is written against."""

_TRANSLATED = frozenset(
    {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p"}
    | {"stop", "user", "stream", "stream_options", "n", "tools", "tool_choice"}
    | {"parallel_tool_calls"}
)
_DROPPED = frozenset(
    {"frequency_penalty", "presence_penalty", "seed", "logit_bias", "service_tier", "store"}
    | {"metadata"}
)
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
"""An ``error`` event's type, as the HTTP status the same error has before a stream."""


class AnthropicProvider(HttpProvider):
    """``x-api-key`` and ``anthropic-version`` over one pooled client; see `Provider`."""

    def __init__(
        self, name: str, config: ProviderConfig, api_key: ApiKey, *, default_max_tokens: int
    ) -> None:
        super().__init__(name, config, api_key)
        self.default_max_tokens = default_max_tokens
        # The SDKs' base URL has no /v1 (https://api.anthropic.com); take either form.
        self._path = "/messages" if config.base_url.endswith("/v1") else "/v1/messages"

    def _headers(self, key: str) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if key:
            headers["x-api-key"] = key
        return headers

    async def complete(self, request: ChatRequest, model: str) -> ChatResponse:
        body = to_anthropic(request, model, default_max_tokens=self.default_max_tokens)
        return from_anthropic(await self._post(self._path, body))

    async def embed(self, request: EmbeddingRequest, model: str) -> EmbeddingResponse:
        raise refuse(f"{self.name}: Anthropic models have no embeddings")

    def stream(self, request: ChatRequest, model: str) -> AsyncIterator[ChatChunk]:
        return self._guarded(self._chunks(request, model))

    async def _chunks(self, request: ChatRequest, model: str) -> AsyncGenerator[ChatChunk, None]:
        body = to_anthropic(request, model, default_max_tokens=self.default_max_tokens)
        translation = StreamTranslation()
        async for _, data in self._events(self._path, {**body, "stream": True}):
            event = self._json_object(data)
            if event.get("type") == "error":  # e.g. overloaded midway
                error = event.get("error")
                kind = error.get("type") if isinstance(error, dict) else None
                message = f"{self.name}: error in the stream: {upstream_message(data.encode())}"
                raise error_for_status(_ERROR_STATUS.get(str(kind), 500), message)
            for chunk in translation.feed(event):
                yield chunk
        # Read to the end of the body, past message_stop: only then is the connection reusable.
        if not translation.done:
            raise error_for_status(502, f"{self.name}: the stream ended before message_stop")


def to_anthropic(request: ChatRequest, model: str, *, default_max_tokens: int) -> dict[str, Any]:
    """The messages API body for an OpenAI chat completions ``request`` (without ``stream``).

    :raises ProviderRequestError: the request asks for what this translation cannot give.
    """
    unsupported = sorted(set(request) - _TRANSLATED - _DROPPED)
    if unsupported:
        raise refuse(f"not supported for Anthropic models: {', '.join(unsupported)}")
    if request.get("n") not in (None, 1):
        raise refuse("Anthropic models give one choice: n must be 1")
    messages = request.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise refuse("messages must be a list of objects")
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role in ("system", "developer"):
            system.append(_text(content))
        elif role == "assistant" and message.get("tool_calls"):
            text = "" if content is None else _blocks(content)
            turns.append({"role": role, "content": tools.assistant_content(message, text)})
        elif role == "tool":
            tools.add_turn(turns, "user", [tools.tool_result(message, _blocks(content))])
        elif role in ("user", "assistant"):
            tools.add_turn(turns, role, _blocks(content))
        else:
            raise refuse(f"messages with role {role!r} are not supported for Anthropic models")
    max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
    body: dict[str, Any] = {
        "model": model,
        "messages": turns,
        "max_tokens": default_max_tokens if max_tokens is None else max_tokens,
    }
    if system:
        body["system"] = "\n\n".join(system)
    for key in ("temperature", "top_p"):
        if request.get(key) is not None:
            body[key] = request[key]
    stop = request.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    user = request.get("user")
    if isinstance(user, str) and user:
        body["metadata"] = {"user_id": user}
    body.update(tools.tool_fields(request))
    return body


def from_anthropic(message: dict[str, Any]) -> ChatResponse:
    """The OpenAI ``chat.completion`` for an Anthropic ``message``."""
    blocks = message.get("content") or []
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    answer: dict[str, Any] = {"role": "assistant", "content": text}
    calls = tools.tool_calls_of(blocks)
    if calls:
        answer = {"role": "assistant", "content": text or None, "tool_calls": calls}
    choice = {
        "index": 0,
        "message": answer,
        "logprobs": None,
        "finish_reason": finish_reason(message.get("stop_reason")),
    }
    usage = message.get("usage") or {}
    return {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model"),
        "choices": [choice],
        "usage": _usage(_prompt_tokens(usage), _int(usage.get("output_tokens"))),
    }


def finish_reason(stop_reason: Any) -> str | None:
    """OpenAI's ``finish_reason`` for Anthropic's ``stop_reason`` (None while unfinished)."""
    if stop_reason is None:
        return None
    return _FINISH_REASONS.get(stop_reason, "stop")


class StreamTranslation:
    """Anthropic's stream events in, OpenAI chunks out; the last chunk carries the usage."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.model: str | None = None
        self.created = int(time.time())
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.done = False
        self.tool_calls = tools.ToolCallStream()

    def feed(self, event: dict[str, Any]) -> list[ChatChunk]:
        """The chunks one event (``data`` of the SSE event, decoded) becomes: zero or one,
        except ``message_stop``, which becomes the usage chunk."""
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.id, self.model = message.get("id"), message.get("model")
            self._count(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            call = self.tool_calls.started(event)
            return [] if call is None else [self._chunk(call)]
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                arguments = self.tool_calls.arguments(event)
                return [] if arguments is None else [self._chunk(arguments)]
            return []
        if kind == "message_delta":
            self._count(event.get("usage") or {})
            reason = finish_reason((event.get("delta") or {}).get("stop_reason"))
            return [self._chunk({}, reason)]
        if kind == "message_stop":
            self.done = True
            usage = _usage(self.prompt_tokens, self.completion_tokens)
            return [{**self._chunk({}), "choices": [], "usage": usage}]
        return []  # ping, content_block_stop, a text block's start: nothing OpenAI sends

    def _count(self, usage: dict[str, Any]) -> None:
        """Anthropic's counts are running totals: the latest one stands."""
        if "input_tokens" in usage:
            self.prompt_tokens = _prompt_tokens(usage)
        if "output_tokens" in usage:
            self.completion_tokens = _int(usage["output_tokens"])

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> ChatChunk:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }


def _text(content: Any) -> str:
    """A system message's text, from a string or text parts."""
    blocks = _blocks(content)
    return blocks if isinstance(blocks, str) else "".join(block["text"] for block in blocks)


def _blocks(content: Any) -> str | list[dict[str, Any]]:
    """A message's content as Anthropic takes it: a string, or text blocks."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise refuse("message content must be a string or a list of text parts")
    blocks = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") != "text":
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise refuse(f"content parts of type {kind!r} are not supported for Anthropic models")
        blocks.append({"type": "text", "text": str(part.get("text", ""))})
    return blocks


def _prompt_tokens(usage: dict[str, Any]) -> int:
    return sum(
        _int(usage.get(key))
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _usage(prompt: int, completion: int) -> Usage:
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
