"""Which model answers: the one asked for, else its fallbacks, each through its provider's breaker.

The candidates are the model and its ``fallbacks``, in order, each once; a fallback the
caller's tier does not allow is skipped (`candidates`). Each is called
through its provider's breaker; while the breaker is open or the call fails in the
provider's way (429, 5xx, timeout, or 401/403: the provider refused the gateway's own
key, a configuration fault of the gateway's and never the caller's), the next candidate
is tried. A request the provider refuses as malformed is returned as it is, and no
fallback is tried (it would refuse it too). When no candidate answers, the refusal says
why: 503 when every breaker was open, 429 (with the upstream's ``Retry-After``) when the
last was rate limited, 504 when it timed out, 502 "upstream authentication failed" when
the last provider refused the gateway's key, else 502.

A stream counts as answered at its first chunk: after that the client holds part of an
answer, and a failure ends the stream (the relay's business) instead of a fallback.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from revoctl.core.errors import first_line
from revoctl.runtime.errors import GatewayError
from revoctl.runtime.providers import (
    ProviderRateLimitError,
    ProviderRequestError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    api_key_from,
    provider_for,
)

if TYPE_CHECKING:
    from revoctl.core.gateway.settings import ModelConfig
    from revoctl.core.services import Services
    from revoctl.runtime.exchange import Exchange
    from revoctl.runtime.identity import Caller
    from revoctl.runtime.metrics import GatewayMetrics
    from revoctl.runtime.providers import (
        ChatChunk,
        ChatRequest,
        ChatResponse,
        EmbeddingResponse,
        Provider,
    )

logger = logging.getLogger("revoctl.gateway")

T = TypeVar("T")

UPSTREAM_AUTH_FAILURES = frozenset({401, 403})
"""A provider's statuses for a key it refuses: the gateway's configuration, not the caller's."""
MAX_REASON_CHARS = 300
"""A failure's reason, as a fallback's log line and a refusal name it, is cut here."""


class Routing:
    """The providers (one pooled client each) and the way from a model to its answer."""

    def __init__(
        self, services: Services, models: dict[str, ModelConfig], metrics: GatewayMetrics
    ) -> None:
        self.services = services
        self.models = models
        self.metrics = metrics
        settings = services.settings
        self.providers: dict[str, Provider] = {
            name: provider_for(
                config,
                name=name,
                api_key=api_key_from(config.api_key, services.read_secret),
                default_max_tokens=settings.gateway.default_max_tokens,
            )
            for name, config in settings.providers.items()
        }

    async def close(self) -> None:
        """Close every provider's connection pool (each, whatever another's close raises)."""
        async with contextlib.AsyncExitStack() as stack:
            for provider in self.providers.values():
                stack.push_async_callback(provider.close)

    async def complete(self, exchange: Exchange) -> ChatResponse:
        """The answer from the first candidate model that gives one, named after it.

        :raises GatewayError: the request's own fault (the provider's 4xx), or no candidate
            could answer.
        """
        response = await self._first_answer(
            exchange, lambda provider, model: provider.complete(exchange.request, model)
        )
        response["model"] = exchange.served_by
        return response

    async def embed(self, exchange: Exchange) -> EmbeddingResponse:
        """The embeddings from the first candidate model that gives them, named after it.

        :raises GatewayError: as `complete`.
        """
        response = await self._first_answer(
            exchange, lambda provider, upstream: provider.embed(exchange.request, upstream)
        )
        response["model"] = exchange.served_by
        return response

    async def open_stream(self, exchange: Exchange) -> tuple[AsyncIterator[ChatChunk], ChatChunk]:
        """The stream of the first candidate model that sends a first chunk, and that chunk.

        :raises GatewayError: as `complete`.
        """
        opened = await self._first_answer(
            exchange, lambda provider, model: _first_chunk(provider, exchange.request, model)
        )
        first_token = time.perf_counter() - exchange.started
        self.metrics.first_token.labels(exchange.served_by).observe(first_token)
        return opened

    async def _first_answer(
        self, exchange: Exchange, attempt: Callable[[Provider, str], Awaitable[T]]
    ) -> T:
        """``attempt`` on each candidate model in turn, through its provider's breaker,
        until one answers; the time spent waiting on providers is the exchange's."""
        failures: list[tuple[str, BaseException]] = []
        for candidate in candidates(self.models, exchange.model, exchange.caller):
            provider, upstream, breaker = self._route(candidate)
            started = time.perf_counter()
            try:
                if breaker is None:
                    answer = await attempt(provider, upstream)
                else:
                    answer = await breaker.call(attempt, provider, upstream)
            except Exception as exc:
                _give_up_unless_retryable(exc)
                failures.append((candidate, exc))
                continue
            finally:
                exchange.provider_seconds += time.perf_counter() - started
            self._served(exchange, candidate, failures)
            return answer
        raise _exhausted(exchange.model, [exc for _, exc in failures])

    def _route(self, model: str) -> tuple[Provider, str, Any]:
        config = self.models[model]
        provider_config = self.services.settings.providers[config.provider]
        breaker = (
            self.services.breakers.get(provider_config.breaker) if provider_config.breaker else None
        )
        return self.providers[config.provider], config.upstream_name(model), breaker

    def _served(
        self, exchange: Exchange, candidate: str, failures: list[tuple[str, BaseException]]
    ) -> None:
        """``candidate`` answered; a fallback is counted and logged with why each model
        before it failed."""
        exchange.served_by = candidate
        if candidate != exchange.model:
            self.metrics.fallbacks.labels(exchange.model, candidate).inc()
            logger.warning(
                "request %s answered by fallback %r: %s",
                exchange.request_id,
                candidate,
                "; ".join(f"{model!r} failed: {_reason(exc)}" for model, exc in failures),
                extra={
                    "request_id": exchange.request_id,
                    "model": exchange.model,
                    "fallback": candidate,
                },
            )


def candidates(models: dict[str, ModelConfig], model: str, caller: Caller) -> list[str]:
    """``model`` and those of its fallbacks ``caller`` may call, in order, each once."""
    named = dict.fromkeys([model, *models[model].fallbacks])
    return [name for name in named if name == model or caller.allows(name)]


async def _first_chunk(
    provider: Provider, request: ChatRequest, model: str
) -> tuple[AsyncIterator[ChatChunk], ChatChunk]:
    """Open the provider's stream and wait for its first chunk (the breaker times this)."""
    stream = provider.stream(request, model)
    try:
        first = await anext(stream)
    except BaseException:
        await close_stream(stream)
        raise
    return stream, first


async def close_stream(stream: AsyncIterator[ChatChunk]) -> None:
    """Close a provider's stream, which gives its connection back to the pool."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


def _give_up_unless_retryable(exc: Exception) -> None:
    """A request the provider refused as malformed goes back as it is: another model
    would refuse it too. Anything else lets the next candidate try."""
    if isinstance(exc, ProviderRequestError):
        status = exc.status if exc.status and 400 <= exc.status < 500 else 400
        raise GatewayError(status, str(exc), code="upstream_rejected") from exc


def _exhausted(model: str, failures: list[BaseException]) -> GatewayError:
    """The refusal when no candidate answered, from how they failed."""
    from revoctl.core import CircuitOpenError

    last = failures[-1] if failures else None
    tried = "; ".join(_reason(f) for f in failures)
    if failures and all(isinstance(f, CircuitOpenError) for f in failures):
        return GatewayError(
            503, f"no model can answer {model!r}: {tried}", kind="server_error",
            code="circuit_open",
        )  # fmt: skip
    if isinstance(last, ProviderRateLimitError):
        headers = []
        if last.retry_after is not None:
            headers.append(("retry-after", str(max(1, math.ceil(last.retry_after)))))
        return GatewayError(
            429, f"every provider for {model!r} is rate limited: {tried}",
            kind="rate_limit_exceeded", code="upstream_rate_limited", headers=headers,
        )  # fmt: skip
    if isinstance(last, ProviderUnavailableError) and last.status in UPSTREAM_AUTH_FAILURES:
        return GatewayError(
            502, f"upstream authentication failed for {model!r} (the provider refused the "
            f"gateway's key: check the provider's api_key): {tried}", kind="server_error",
        )  # fmt: skip
    if isinstance(last, ProviderTimeoutError | TimeoutError):
        return GatewayError(
            504, f"no model answered {model!r} in time: {tried}", kind="server_error"
        )
    return GatewayError(502, f"no model could answer {model!r}: {tried}", kind="server_error")


def _reason(exc: BaseException) -> str:
    return first_line(exc)[:MAX_REASON_CHARS]
