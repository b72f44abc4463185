"""Which model answers: the one asked for, else its fallbacks; on which of its deployments.

The candidates are the model and its ``fallbacks``, in order, each once; a fallback the
caller's tier does not allow is skipped (`candidates`). A candidate's call goes to one of
its deployments (`revoctl.runtime.deployments`: its ``routing`` strategy, among those whose
breaker lets a call through), through that deployment's breaker. When the call fails in the
provider's way (429, 5xx, timeout, a breaker that refuses, or 401/403: the provider refused
the gateway's own key, a configuration fault of the gateway's and never the caller's), the
model's ``retries`` further attempts go to another of its deployments not tried yet (the
same one when no other can take it), each after a backoff with full jitter (up to
``retry_backoff_seconds``, doubling); then the next candidate is tried. A request the
provider refuses as malformed is returned as it is, with no retry and no fallback (they
would refuse it too). When no candidate answers, the refusal says why: 503 when every
breaker was open, 429 (with the upstream's ``Retry-After``) when the last was rate limited,
504 when it timed out, 502 "upstream authentication failed" when the last provider refused
the gateway's key, else 502.

The request was charged once, before routing (`revoctl.runtime.charging`): retries and
fallbacks spend that reservation, never a second one. A stream counts as answered at its
first chunk: after that the client holds part of an answer, and a failure ends the stream
(the relay's business) instead of a retry or a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from revoctl.core.gateway.settings import RoutingStrategy
from revoctl.runtime.deployments import Deployment, available, choose
from revoctl.runtime.fleet_load import FleetLoads, open_fleet_load_store
from revoctl.runtime.providers import (
    WITHOUT_EMBEDDINGS,
    ProviderRequestError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    api_key_from,
    provider_for,
)
from revoctl.runtime.tracing import traced_call
from revoctl.runtime.upstream_failures import (
    UPSTREAM_AUTH_FAILURES,
    exhausted,
    give_up_unless_retryable,
    reason,
)

if TYPE_CHECKING:
    from revoctl.core.gateway.settings import DeploymentConfig, ModelConfig
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


class Routing:
    """The providers (one pooled client each), the models' deployments, and the way from a
    model to its answer."""

    def __init__(
        self,
        services: Services,
        models: dict[str, ModelConfig],
        metrics: GatewayMetrics,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.services = services
        self.models = models
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.sleep = sleep
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
        self._deployments: dict[str, list[Deployment]] | None = None
        self.fleet: FleetLoads | None = None
        """The fleet's loads, shared when some model routes ``least_busy`` or
        ``lowest_latency`` (`start`); None otherwise."""

    def start(self) -> FleetLoads | None:
        """Put every model's deployments behind their breakers (built by now); the fleet's
        loads to refresh in the background, when a model's routing needs them."""
        deployments = self.deployments()
        if any(config.routing is not RoutingStrategy.WEIGHTED for config in self.models.values()):
            self.fleet = FleetLoads(
                [d for pool in deployments.values() for d in pool],
                open_fleet_load_store(self.services),
                self.services.settings.gateway.routing_refresh_seconds,
            )
        return self.fleet

    def deployments(self) -> dict[str, list[Deployment]]:
        """Every model's deployments, by model (built at the first ask)."""
        if self._deployments is None:
            self._deployments = {
                name: [
                    Deployment.of(name, deployment, self._breaker_of(deployment))
                    for deployment in config.deployments_of(name)
                ]
                for name, config in self.models.items()
            }
        return self._deployments

    def _breaker_of(self, deployment: DeploymentConfig) -> Any:
        """The deployment's breaker, else its provider's, else None."""
        name = deployment.breaker or self.services.settings.providers[deployment.provider].breaker
        return self.services.breakers.get(name) if name else None

    async def close(self) -> None:
        """Close every provider's connection pool and the fleet's store (each, whatever
        another's close raises)."""
        async with contextlib.AsyncExitStack() as stack:
            for provider in self.providers.values():
                stack.push_async_callback(provider.close)
            if self.fleet is not None:
                stack.push_async_callback(self.fleet.close)

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
            exchange,
            lambda provider, upstream: provider.embed(exchange.request, upstream),
            usable=self._embeds,
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

    def _embeds(self, model: str) -> bool:
        """Whether every provider of ``model`` has an embeddings API."""
        providers = self.services.settings.providers
        kinds = {providers[name].kind for name in self.models[model].providers()}
        return not kinds & WITHOUT_EMBEDDINGS

    async def _first_answer(
        self,
        exchange: Exchange,
        attempt: Callable[[Provider, str], Awaitable[T]],
        usable: Callable[[str], bool] = lambda model: True,
    ) -> T:
        """``attempt(provider, upstream)`` on each candidate model in turn (the fallbacks
        ``usable`` accepts), on its deployments with its retries, until one answers; the
        time spent waiting on providers (and backing off after their failures) is the
        exchange's."""
        failures: list[tuple[str, BaseException]] = []
        pools = self.deployments()
        named = candidates(self.models, exchange.model, exchange.caller)
        for candidate in (c for c in named if c == exchange.model or usable(c)):
            config = self.models[candidate]
            pool = pools[candidate]
            tried: list[Deployment] = []
            for retry in range(config.retries + 1):
                if retry:
                    if not _worth_retrying(failures[-1][1], pool, tried):
                        break
                    backoff = time.perf_counter()  # the providers' time, not the gateway's
                    await self.sleep(self.rng.uniform(0, backoff_cap(config, retry)))
                    exchange.provider_seconds += time.perf_counter() - backoff
                deployment = choose(config.routing, pool, tried, self.rng)
                if retry:
                    self._retrying(exchange, deployment, retry, failures[-1])
                tried.append(deployment)
                try:
                    answer = await self._call(exchange, deployment, attempt)
                except Exception as exc:
                    give_up_unless_retryable(exc)
                    failures.append((f"{candidate!r} failed on {deployment.name!r}", exc))
                    continue
                self._served(exchange, deployment, failures)
                return answer
        raise exhausted(exchange.model, [exc for _, exc in failures])

    async def _call(
        self,
        exchange: Exchange,
        deployment: Deployment,
        attempt: Callable[[Provider, str], Awaitable[T]],
    ) -> T:
        """One attempt on ``deployment`` through its breaker, counted in flight while it
        runs, timed into its moving average when it answers, and counted by outcome."""
        from revoctl.core import CircuitOpenError

        provider, breaker = self.providers[deployment.provider], deployment.breaker
        attempt = traced_call(attempt, deployment)  # inside the breaker's span
        labels = (deployment.model, deployment.name)
        gauge = self.metrics.deployment_in_flight.labels(*labels)
        deployment.in_flight += 1
        gauge.inc()
        outcome = "cancelled"
        started = time.perf_counter()
        try:
            if breaker is None:
                answer = await attempt(provider, deployment.upstream)
            else:
                answer = await breaker.call(attempt, provider, deployment.upstream)
        except CircuitOpenError:
            outcome = "rejected"
            raise
        except (TimeoutError, ProviderTimeoutError):
            outcome = "timeout"
            raise
        except ProviderRequestError:
            outcome = "refused"
            raise
        except Exception:
            outcome = "failure"
            raise
        else:
            outcome = "success"
            deployment.observe(time.perf_counter() - started)
            return answer
        finally:
            exchange.provider_seconds += time.perf_counter() - started
            deployment.in_flight -= 1
            gauge.dec()
            self.metrics.deployment_calls.labels(*labels, outcome).inc()

    def _retrying(
        self,
        exchange: Exchange,
        deployment: Deployment,
        retry: int,
        failed: tuple[str, BaseException],
    ) -> None:
        """Retry number ``retry`` of its model, on ``deployment``: counted, and logged with
        the failure it follows."""
        exchange.retries += 1
        self.metrics.retries.labels(deployment.model, deployment.name).inc()
        logger.warning(
            "request %s: retry %d on deployment %r after %s: %s",
            exchange.request_id,
            retry,
            deployment.name,
            failed[0],
            reason(failed[1]),
            extra={
                "request_id": exchange.request_id,
                "model": deployment.model,
                "deployment": deployment.name,
            },
        )

    def _served(
        self, exchange: Exchange, deployment: Deployment, failures: list[tuple[str, BaseException]]
    ) -> None:
        """``deployment`` answered; a fallback is counted and logged with why each model
        (and deployment) before it failed."""
        candidate = deployment.model
        exchange.served_by = candidate
        exchange.deployment = deployment.name
        exchange.provider = deployment.provider
        if candidate != exchange.model:
            self.metrics.fallbacks.labels(exchange.model, candidate).inc()
            logger.warning(
                "request %s answered by fallback %r on deployment %r: %s",
                exchange.request_id,
                candidate,
                deployment.name,
                "; ".join(f"{where}: {reason(exc)}" for where, exc in failures),
                extra={
                    "request_id": exchange.request_id,
                    "model": exchange.model,
                    "fallback": candidate,
                    "deployment": deployment.name,
                },
            )


def backoff_cap(config: ModelConfig, retry: int) -> float:
    """The most retry number ``retry`` (1-based) waits: ``retry_backoff_seconds``, doubling
    with each retry (the wait itself is drawn between 0 and this: full jitter)."""
    return float(config.retry_backoff_seconds * 2 ** (retry - 1))


def _worth_retrying(exc: BaseException, pool: list[Deployment], tried: list[Deployment]) -> bool:
    """A failure in the provider's way is retried while one of the model's deployments would
    let a call through (none: the fallbacks, without a wait); a provider refusing the
    gateway's key only on a deployment not tried yet (the same key would be refused again)."""
    from revoctl.core import CircuitOpenError

    if not isinstance(exc, ProviderUnavailableError | TimeoutError | CircuitOpenError):
        return False
    if isinstance(exc, ProviderUnavailableError) and exc.status in UPSTREAM_AUTH_FAILURES:
        return any(available(d) and all(d is not t for t in tried) for d in pool)
    return any(available(d) for d in pool)


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
