"""What the gateway asks of an upstream LLM API, and the errors it gets back.

The gateway speaks one format inside: OpenAI's chat completions, as the OpenAI API defines
its JSON (a request with ``messages``, ``max_tokens``, ``temperature``, ``stop``, ``user``, ...;
a response with ``id``, ``choices``, ``usage``; stream chunks with ``choices[].delta``). A
`Provider` takes that request and the provider's own model name, and answers in that format
whatever its upstream speaks, so the gateway passes OpenAI bodies through untouched and
translates only where the upstream is not OpenAI.

Errors, so the gateway can pick a fallback and the breaker can count failures::

    ProviderError                    the call failed: status (None: no answer), retry_after
    ├── ProviderRequestError         the request's own fault (400, 413, 422, or a feature
    │                                the upstream lacks): retryable False, caller_fault True
    ├── ProviderUnavailableError     the provider's fault: 5xx, 401/403/404 (its key, its
    │   │                            model name), refused or reset: retryable True
    │   ├── ProviderRateLimitError   429; retry_after from Retry-After when it sent one
    │   └── ProviderTimeoutError     no answer within the provider's timeout
    └── ProviderStreamError          a stream broke after its first chunk: the caller holds
                                     part of an answer, so retryable False (not elsewhere)

``retryable`` means "another model may answer this request": fall back. A breaker counts
every error whose ``caller_fault`` is False. Messages name the provider and the upstream's
own message (redacted), never a key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypedDict

from revoctl.core.errors import RevoctlError
from revoctl.core.references import SecretReader, resolve_text

__all__ = [
    "ApiKey",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "Provider",
    "ProviderError",
    "ProviderRateLimitError",
    "ProviderRequestError",
    "ProviderStreamError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "Usage",
    "api_key_from",
    "embedding_usage_of",
    "usage_of",
]

ChatRequest = dict[str, Any]
"""An OpenAI chat completions request body; ``model`` and ``stream`` are the provider's."""
ChatResponse = dict[str, Any]
"""An OpenAI ``chat.completion`` object, ``usage`` included."""
ChatChunk = dict[str, Any]
"""An OpenAI ``chat.completion.chunk``; a stream's last one has ``usage`` and no choices."""
EmbeddingRequest = dict[str, Any]
"""An OpenAI embeddings request body (``input``, ``encoding_format``, ``dimensions``, ``user``)."""
EmbeddingResponse = dict[str, Any]
"""An OpenAI embeddings answer: ``{"object": "list", "data", "model", "usage"}``."""
ApiKey = Callable[[], Awaitable[str]]
"""Reads the provider's current API key, on every request (cheap when cached), so a rotated
secret reaches the provider without a restart; "" sends no key."""


class Usage(TypedDict):
    """Tokens as the upstream counted them, in OpenAI's names."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Provider(Protocol):
    """One upstream API over one shared connection pool."""

    name: str
    """The ``[providers.NAME]`` key: errors and metrics name the provider by it."""

    async def complete(self, request: ChatRequest, model: str) -> ChatResponse:
        """One answer, whole, from the upstream model called ``model`` there.

        :raises ProviderError: see the tree in this module's docstring.
        """
        ...

    def stream(self, request: ChatRequest, model: str) -> AsyncIterator[ChatChunk]:
        """The answer as chunks; the last one carries ``usage`` (empty ``choices``) whether or
        not the request asked for it. Close it (``contextlib.aclosing``) when leaving early.

        :raises ProviderError: before the first chunk, as `complete` does; after it,
            `ProviderStreamError`.
        """
        ...

    async def embed(self, request: EmbeddingRequest, model: str) -> EmbeddingResponse:
        """The embeddings of ``request``'s input from the upstream model called ``model``.

        :raises ProviderError: as `complete`; `ProviderRequestError` from an upstream that
            has no embeddings (Anthropic).
        """
        ...

    async def close(self) -> None:
        """Close the connection pool."""
        ...


def usage_of(payload: ChatResponse | ChatChunk) -> Usage | None:
    """The ``usage`` a response or chunk carries, if it carries one."""
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def embedding_usage_of(payload: EmbeddingResponse) -> Usage | None:
    """The ``usage`` an embeddings answer carries (``prompt_tokens``; no completion), if any."""
    usage = payload.get("usage")
    prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if not isinstance(prompt, int) or isinstance(prompt, bool):
        return None
    return Usage(prompt_tokens=prompt, completion_tokens=0, total_tokens=prompt)


def api_key_from(template: str, read_secret: SecretReader) -> ApiKey:
    """The `ApiKey` for a configured ``api_key``: a ``${secret:NAME}`` template resolved on
    each call through ``read_secret`` (the secret manager, whose cache keeps it cheap)."""

    async def api_key() -> str:
        return await resolve_text(template, read_secret)

    return api_key


class ProviderError(RevoctlError):
    """An upstream call failed; ``status`` is the upstream's HTTP status, if it answered."""

    retryable = False
    caller_fault = False

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ProviderRequestError(ProviderError):
    """The upstream refused the request itself (or could never take it): no model will."""

    caller_fault = True


class ProviderUnavailableError(ProviderError):
    """The provider could not answer: another model may."""

    retryable = True


class ProviderRateLimitError(ProviderUnavailableError):
    """429: the upstream's own rate limit; ``retry_after`` when it said how long."""


class ProviderTimeoutError(ProviderUnavailableError):
    """No answer within the provider's configured ``timeout``."""


class ProviderStreamError(ProviderError):
    """A stream failed after its first chunk: end it with an error, never retry elsewhere."""
