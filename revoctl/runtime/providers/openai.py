"""Any OpenAI-compatible chat completions API: OpenAI, DeepSeek, vLLM, any ``base_url``.

The gateway's format is this API's, so requests and answers pass through as they are; the
adapter only names the upstream model, sets ``stream``, and asks a stream for its usage
(``stream_options.include_usage``) so that tokens are known at the end of every stream.
Embeddings (``POST /embeddings``) pass through the same way.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

from revoctl.runtime.providers._http import HttpProvider, error_for_status, upstream_message
from revoctl.runtime.providers.base import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
)

PATH = "/chat/completions"
"""Below ``base_url``, which ends in ``/v1`` (or the upstream's equivalent)."""
EMBEDDINGS_PATH = "/embeddings"


class OpenAIProvider(HttpProvider):
    """``Authorization: Bearer KEY`` over one pooled client; see `Provider`."""

    def _headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _path(self, model: str, operation: str) -> str:
        """Where ``operation`` (`PATH`, `EMBEDDINGS_PATH`) on ``model`` is, below ``base_url``."""
        return operation

    async def complete(self, request: ChatRequest, model: str) -> ChatResponse:
        body = {**request, "model": model, "stream": False}
        body.pop("stream_options", None)  # OpenAI refuses it without stream
        return await self._post(self._path(model, PATH), body)

    async def embed(self, request: EmbeddingRequest, model: str) -> EmbeddingResponse:
        return await self._post(self._path(model, EMBEDDINGS_PATH), {**request, "model": model})

    def stream(self, request: ChatRequest, model: str) -> AsyncIterator[ChatChunk]:
        return self._guarded(self._chunks(request, model))

    async def _chunks(self, request: ChatRequest, model: str) -> AsyncGenerator[ChatChunk, None]:
        options = request.get("stream_options")
        options = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        body = {**request, "model": model, "stream": True, "stream_options": options}
        done = False
        # Read on to the end of the body, past [DONE]: only then is the connection reusable.
        async for _, data in self._events(self._path(model, PATH), body):
            if data == "[DONE]":
                done = True
                continue
            chunk = self._json_object(data)
            if "error" in chunk:  # sent in place of a chunk when the upstream fails midway
                detail = upstream_message(data.encode())
                raise error_for_status(500, f"{self.name}: error in the stream: {detail}")
            yield chunk
        if not done:
            raise error_for_status(502, f"{self.name}: the stream ended without [DONE]")
