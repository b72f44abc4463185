"""`Gateway`: one request's path through the core services, exactly as the platform uses them.

A chat request is answered in this order:

1. the caller is identified: a gateway key (``gateway.auth = "keys"``), the request's
   ``user`` field, the client address, per each rule's scope;
2. it is charged before any provider is called: 1 on ``gateway.request_rule`` and, on
   ``gateway.token_rule``, an upper bound of its prompt's tokens plus its ``max_tokens``
   (`revoctl.runtime.tokens`), so a token limit holds exactly across every worker and
   instance that shares the store; a denial is a 429 that consumed nothing;
3. the model's provider is called through the provider's breaker; while the breaker is
   open or the call fails in the provider's way (429, 5xx, timeout), the model's
   ``fallbacks`` are tried in order; a request the provider refuses as malformed is
   returned as it is, and no fallback is tried (it would refuse it too);
4. what the provider's usage shows was not used is refunded to the token rule, and the
   request's row and usage (tokens, cost) go to the batched usage writer.

A stream is answered the same way up to its first chunk; after that the client holds
part of an answer, so a failure ends the stream with an error event instead of a
fallback, and the refund waits for the usage in the stream's last chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from revoctl import __version__
from revoctl.core._batch import BatchWriter
from revoctl.runtime.keys import KeyRing
from revoctl.runtime.metrics import (
    BREAKER_OUTCOMES,
    BREAKER_STATE_VALUES,
    DeltaCounter,
    GatewayMetrics,
)
from revoctl.runtime.providers import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Provider,
    ProviderRateLimitError,
    ProviderRequestError,
    ProviderStreamError,
    ProviderTimeoutError,
    Usage,
    api_key_from,
    provider_for,
    usage_of,
)
from revoctl.runtime.tokens import prompt_token_bound
from revoctl.runtime.usage import MAX_USER_LENGTH, ModelCall, RequestRecord, UsageSink, cost_of
from revoctl.runtime.watch import SecretChangeWatcher

if TYPE_CHECKING:
    from starlette.requests import Request

    from revoctl.core.limits import RateLimitRule, RateLimitScope
    from revoctl.core.limits.base import RateLimitResult
    from revoctl.core.services import Services
    from revoctl.runtime.settings import GatewayConfig, ModelConfig

logger = logging.getLogger("revoctl.gateway")

T = TypeVar("T")

METRICS_SYNC_SECONDS = 1.0
SECRET_WATCH_SECONDS = 1.0
INSTANCE_REPORT_SECONDS = 5.0
SYSTEM_SAMPLE_SECONDS = 60.0
MAX_BODY_TOKENS = 1_000_000
ANONYMOUS = "anonymous"


class HttpError(Exception):
    """An answer the client gets as an OpenAI-style error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.code = code
        self.headers = list(headers)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "code": self.code}}


@dataclass(frozen=True)
class Caller:
    """Who is asking: the key's name, the request's ``user`` field, the client address."""

    key_name: str | None
    user: str | None
    client_ip: str | None

    def identifier(self, scope: RateLimitScope) -> str | None:
        """The key a rule of ``scope`` counts this caller under (None: the one global key)."""
        name = scope.value
        if name == "per_api_key":
            return self.key_name or ANONYMOUS
        if name == "per_user":
            return self.user or self.key_name or ANONYMOUS
        if name == "per_ip":
            return self.client_ip or "unknown"
        return None


@dataclass
class Charged:
    """One rule's charge for one request: what was taken, and the rule's state since."""

    kind: str  # "requests", "tokens", "model-requests" or "model-tokens"
    rule: RateLimitRule
    identifier: str | None
    weight: int
    result: RateLimitResult


@dataclass
class Charge:
    """What a request was charged, for the response headers and the refund."""

    entries: list[Charged] = field(default_factory=list)

    def tokens(self) -> list[Charged]:
        return [entry for entry in self.entries if entry.kind.endswith("tokens")]

    def headers(self) -> list[tuple[str, str]]:
        """``RateLimit-Policy`` and ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers) and
        the ``x-ratelimit-*`` headers OpenAI clients read."""
        if not self.entries:
            return []
        policy = ", ".join(
            f'"{e.kind}";q={e.result.limit};w={_whole(e.rule.window_seconds)}' for e in self.entries
        )
        state = ", ".join(
            f'"{e.kind}";r={e.result.remaining};t={math.ceil(e.result.reset_after)}'
            for e in self.entries
        )
        headers = [("ratelimit-policy", policy), ("ratelimit", state)]
        for e in self.entries:
            headers += [
                (f"x-ratelimit-limit-{e.kind}", str(e.result.limit)),
                (f"x-ratelimit-remaining-{e.kind}", str(e.result.remaining)),
                (f"x-ratelimit-reset-{e.kind}", _duration(e.result.reset_after)),
            ]
        return headers


@dataclass
class Exchange:
    """One chat request on its way through: what it asks, who asks, what it was charged."""

    model: str
    request: ChatRequest
    caller: Caller
    route: str
    request_id: str
    started: float
    charge: Charge = field(default_factory=Charge)
    served_by: str | None = None
    answer: ChatResponse | None = None
    """The whole answer, once there is one (for settling it after the response is sent)."""
    provider_seconds: float = 0.0

    def overhead_ms(self) -> float:
        """The gateway's own time so far: all of it but the wait for the provider."""
        return round((time.perf_counter() - self.started - self.provider_seconds) * 1000, 3)


class Gateway:
    """The runtime's state: providers, keys, usage writer, metrics, over `Services`."""

    def __init__(self, services: Services, metrics: GatewayMetrics) -> None:
        self.services = services
        self.metrics = metrics
        self.config: GatewayConfig = services.settings.gateway
        self.models: dict[str, ModelConfig] = dict(services.settings.models)
        self.providers: dict[str, Provider] = {}
        self.keys: KeyRing | None = None
        self.usage = BatchWriter(
            UsageSink(lambda: services.db),
            what="usage rows",
            describe=RequestRecord.describe,
            capacity=self.config.usage_buffer,
        )
        self.started_at = datetime.now(UTC)
        self.instance = f"revoctl:{os.uname().nodename}:{os.getpid()}:runtime"
        self._tasks: list[asyncio.Task[None]] = []
        self._deltas = DeltaCounter()
        self._ready = False

    @classmethod
    def of(cls, request: Request) -> Gateway:
        gateway: Gateway = request.state.gateway
        return gateway

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Build the providers, load the keys, start the background work.

        The limiter and the breakers are built now, so a configuration that cannot
        work fails at start-up, not at the first request.
        """
        settings = self.services.settings
        read_secret = self.services.read_secret
        for name, config in settings.providers.items():
            self.providers[name] = provider_for(
                config,
                name=name,
                api_key=api_key_from(config.api_key, read_secret),
                default_max_tokens=self.config.default_max_tokens,
            )
        await self.services.limiter.initialize()
        await self.services.breakers.initialize()
        if self.config.auth == "keys":
            self.keys = KeyRing(
                self.services.keys, refresh_seconds=self.config.keys_refresh_seconds
            )
            await self.keys.start()
        watcher = SecretChangeWatcher(self.services.db, self.services.secrets)
        try:
            await watcher.check()  # from now on, a change made anywhere drops our cached value
        except Exception as exc:  # the database may be away: the watcher tries again each second
            logger.warning("secret changes not followed yet: %s: %s", type(exc).__name__, exc)
        self._tasks = [
            asyncio.create_task(self._every(METRICS_SYNC_SECONDS, self.sync_metrics)),
            asyncio.create_task(self._every(INSTANCE_REPORT_SECONDS, self._report_instance)),
            asyncio.create_task(self._every(SECRET_WATCH_SECONDS, watcher.check)),
        ]
        self._ready = True

    async def stop(self, flush_seconds: float) -> None:
        """Stop the background work, flush the usage rows (for at most ``flush_seconds``),
        close the providers."""
        self._ready = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.keys is not None:
            await self.keys.stop()
        await self.usage.close(flush_seconds)
        self._usage_metrics()  # what shutdown dropped is counted too
        async with contextlib.AsyncExitStack() as stack:
            for provider in self.providers.values():
                stack.push_async_callback(provider.close)

    async def _every(self, seconds: float, work: Callable[[], Any]) -> None:
        """``work`` now and every ``seconds``: a new instance shows in ``db pool`` at once."""
        while True:
            try:
                await work()
            except Exception as exc:  # background work reports and carries on
                logger.warning("%s failed: %s: %s", work.__name__, type(exc).__name__, exc)
            await asyncio.sleep(seconds)

    # ------------------------------------------------------------------ callers

    async def caller(self, request: Request, user: str | None) -> Caller:
        """Who is asking; with keys required, a request without a valid key is a 401."""
        key_name = None
        if self.keys is not None:
            header = request.headers.get("authorization", "")
            scheme, _, presented = header.partition(" ")
            if scheme.lower() == "bearer" and presented:
                key_name = await self.keys.verify(presented.strip())
            if key_name is None:
                raise HttpError(
                    401,
                    "a valid gateway key is required: Authorization: Bearer <key> "
                    "(revoctl keys create NAME)",
                    code="invalid_api_key",
                )
            request.scope["state"]["key_name"] = key_name
        client = request.client.host if request.client else None
        return Caller(key_name=key_name, user=user, client_ip=client)

    # ------------------------------------------------------------------ requests

    def exchange(
        self, body: Any, caller: Caller, *, route: str, request_id: str, started: float
    ) -> Exchange:
        """A checked chat request for a configured model.

        :raises HttpError: 400 for a malformed body (or a ``user`` too long to be stored),
            404 for an unknown model.
        """
        if not isinstance(body, dict):
            raise HttpError(400, "the body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise HttpError(400, "'model' is required", code="missing_model")
        if model not in self.models:
            raise HttpError(404, f"the model {model!r} does not exist", code="model_not_found")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise HttpError(400, "'messages' must be a non-empty list")
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
            raise HttpError(400, "each message must be an object with a 'role'")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None and (
            isinstance(max_tokens, bool)
            or not isinstance(max_tokens, int)
            or not 0 < max_tokens <= MAX_BODY_TOKENS
        ):
            raise HttpError(400, f"'max_tokens' must be a whole number from 1 to {MAX_BODY_TOKENS}")
        if not isinstance(body.get("stream", False), bool):
            raise HttpError(400, "'stream' must be true or false")
        user = body.get("user")
        if isinstance(user, str) and len(user) > MAX_USER_LENGTH:
            raise HttpError(
                400, f"'user' is limited to {MAX_USER_LENGTH} characters", code="user_too_long"
            )
        request = dict(body)
        request["max_tokens"] = max_tokens or self.config.default_max_tokens
        request.pop("max_completion_tokens", None)
        return Exchange(
            model=model,
            request=request,
            caller=caller,
            route=route,
            request_id=request_id,
            started=started,
        )

    async def charge(self, exchange: Exchange) -> None:
        """Charge the request's rules before any provider is called.

        :raises HttpError: 429 when a rule denies it; nothing stays charged then.
        """
        tokens = prompt_token_bound(exchange.request["messages"]) + int(
            exchange.request["max_tokens"]
        )
        model = self.models[exchange.model]
        wanted = [  # (kind, rule, weight, per model): the gateway's, then the model's own
            ("requests", self.config.request_rule, 1, False),
            ("tokens", self.config.token_rule, tokens, False),
            ("model-requests", model.request_rule, 1, True),
            ("model-tokens", model.token_rule, tokens, True),
        ]
        limiter = self.services.limiter
        planned: list[tuple[str, RateLimitRule, str | None, int]] = []
        for kind, rule_name, weight, per_model in wanted:
            if not rule_name:
                continue
            rule = limiter.rule(rule_name)
            identifier = exchange.caller.identifier(rule.scope)
            if per_model:
                identifier = f"{identifier or '*'}:{exchange.model}"
            planned.append((kind, rule, identifier, weight))
        # The rules are independent: checked at once, one round trip of latency for all.
        results = await asyncio.gather(
            *(limiter.check_rate_limit(rule, who, weight) for _, rule, who, weight in planned)
        )
        exchange.charge.entries = [
            Charged(kind, rule, who, weight, result)
            for (kind, rule, who, weight), result in zip(planned, results, strict=True)
        ]
        denied = next((e for e in exchange.charge.entries if not e.result.allowed), None)
        if denied is not None:
            error = self._denied(denied, exchange.charge)
            await self.refund_all(exchange)  # a denied request consumes nothing
            raise error

    def _denied(self, entry: Charged, charge: Charge) -> HttpError:
        retry = entry.result.retry_after
        if retry is None:
            message = (
                f"this request needs {entry.weight} {entry.kind} and the limit of "
                f"{entry.rule.name!r} is {entry.result.limit}: it can never be allowed"
            )
            headers = charge.headers()
        else:
            message = (
                f"rate limit {entry.rule.name!r} reached for {entry.kind}: retry in {retry:.3g}s"
            )
            headers = [("retry-after", str(max(1, math.ceil(retry)))), *charge.headers()]
        return HttpError(429, message, kind=entry.kind, code="rate_limit_exceeded", headers=headers)

    async def refund_all(self, exchange: Exchange) -> None:
        """Give back every unit the request was charged (it was denied or never served)."""
        limiter = self.services.limiter
        await asyncio.gather(
            *(
                limiter.refund(entry.rule, entry.identifier, entry.weight)
                for entry in exchange.charge.entries
                if entry.result.allowed
            )
        )
        exchange.charge.entries.clear()

    async def settle(self, exchange: Exchange, usage: Usage | None) -> None:
        """Refund the tokens the provider's usage shows were not used; without usage (a
        broken stream, a client gone), the charge stands: never count too little."""
        if usage is None:
            return
        for charged in exchange.charge.tokens():
            unused = charged.weight - usage["total_tokens"]
            if unused > 0:
                after = await self.services.limiter.refund(charged.rule, charged.identifier, unused)
                if after is not None:
                    charged.result = after
            elif unused < 0:
                logger.warning(
                    "provider counted %d tokens more than the bound charged for request %s",
                    -unused,
                    exchange.request_id,
                )

    # ------------------------------------------------------------------ providers

    def candidates(self, model: str) -> list[str]:
        """The model and its fallbacks, in order, each once."""
        return list(dict.fromkeys([model, *self.models[model].fallbacks]))

    async def complete(self, exchange: Exchange) -> ChatResponse:
        """The answer from the first candidate model that gives one.

        :raises HttpError: the request's own fault (the provider's 4xx), or no candidate
            could answer.
        """
        response = await self._first_answer(
            exchange, lambda provider, model: provider.complete(exchange.request, model)
        )
        response["model"] = exchange.served_by
        exchange.answer = response
        return response

    async def open_stream(self, exchange: Exchange) -> tuple[AsyncIterator[ChatChunk], ChatChunk]:
        """The stream of the first candidate model that sends a first chunk, and that chunk.

        :raises HttpError: as `complete`.
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
        for candidate in self.candidates(exchange.model):
            provider, upstream, breaker = self._route(candidate)
            started = time.perf_counter()
            try:
                if breaker is None:
                    answer = await attempt(provider, upstream)
                else:
                    answer = await breaker.call(attempt, provider, upstream)
            except Exception as exc:
                self._give_up_unless_retryable(exc)
                failures.append((candidate, exc))
                continue
            finally:
                exchange.provider_seconds += time.perf_counter() - started
            self._served(exchange, candidate, failures)
            return answer
        raise self._exhausted(exchange.model, [exc for _, exc in failures])

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
                "; ".join(f"{model!r} failed: {_one_line(exc)}" for model, exc in failures),
                extra={
                    "request_id": exchange.request_id,
                    "model": exchange.model,
                    "fallback": candidate,
                },
            )

    @staticmethod
    def _give_up_unless_retryable(exc: Exception) -> None:
        """A request the provider refused as malformed goes back as it is: another model
        would refuse it too. Anything else lets the next candidate try."""
        if isinstance(exc, ProviderRequestError):
            status = exc.status if exc.status and 400 <= exc.status < 500 else 400
            raise HttpError(status, str(exc), code="upstream_rejected") from exc

    def _exhausted(self, model: str, failures: list[BaseException]) -> HttpError:
        from revoctl.core import CircuitOpenError

        last = failures[-1] if failures else None
        tried = "; ".join(_one_line(f) for f in failures)
        if failures and all(isinstance(f, CircuitOpenError) for f in failures):
            return HttpError(
                503, f"no model can answer {model!r}: {tried}", kind="server_error",
                code="circuit_open",
            )  # fmt: skip
        if isinstance(last, ProviderRateLimitError):
            headers = []
            if last.retry_after is not None:
                headers.append(("retry-after", str(max(1, math.ceil(last.retry_after)))))
            return HttpError(
                429, f"every provider for {model!r} is rate limited: {tried}",
                kind="rate_limit_exceeded", code="upstream_rate_limited", headers=headers,
            )  # fmt: skip
        if isinstance(last, ProviderTimeoutError | TimeoutError):
            return HttpError(
                504, f"no model answered {model!r} in time: {tried}", kind="server_error"
            )
        return HttpError(502, f"no model could answer {model!r}: {tried}", kind="server_error")

    # ------------------------------------------------------------------ usage and metrics

    def record(
        self, exchange: Exchange, status: int, usage: Usage | None, *, method: str, path: str
    ) -> None:
        """The request's row, its model call's usage and cost, and its metrics."""
        elapsed = time.perf_counter() - exchange.started
        call = None
        model = exchange.served_by or exchange.model
        if usage is not None and exchange.served_by is not None:
            config = self.models[exchange.served_by]
            call = ModelCall(
                provider=config.provider,
                model=exchange.served_by,
                prompt_tokens=usage["prompt_tokens"],
                completion_tokens=usage["completion_tokens"],
                cost=cost_of(
                    usage["prompt_tokens"],
                    usage["completion_tokens"],
                    config.input_cost_per_1k,
                    config.output_cost_per_1k,
                ),
            )
            self.metrics.tokens.labels(config.provider, model, "prompt").inc(usage["prompt_tokens"])
            self.metrics.tokens.labels(config.provider, model, "completion").inc(
                usage["completion_tokens"]
            )
            self.metrics.cost.labels(config.provider, model).inc(float(call.cost))
        self.metrics.requests.labels(exchange.route, model, str(status)).inc()
        self.metrics.latency.labels(exchange.route, model).observe(elapsed)
        self.metrics.overhead.observe(max(0.0, elapsed - exchange.provider_seconds))
        self.usage.add(
            RequestRecord(
                ts=datetime.now(UTC),
                method=method,
                path=path,
                status_code=status,
                duration_ms=round(elapsed * 1000, 3),
                user_id=exchange.caller.user or exchange.caller.key_name,
                key_name=exchange.caller.key_name,
                client_ip=exchange.caller.client_ip,
                request_id=exchange.request_id,
                call=call,
            )
        )

    async def sync_metrics(self) -> None:
        """Fold the services' own counters and gauges into the Prometheus families."""
        m = self.metrics
        built = self.services.built()
        if "limiter" in built:
            decisions = self.services.limiter.decisions()
            self._deltas.fold(
                m.rate_limit_decisions,
                (
                    ((rule, outcome), count)
                    for rule, outcomes in decisions.items()
                    for outcome, count in outcomes.items()
                ),
            )

        if "breakers" in built:
            breakers = self.services.breakers
            for name, stats in breakers.stats().items():
                self._deltas.fold(
                    m.breaker_calls,
                    (
                        ((name, outcome), float(stats[counter]))
                        for outcome, counter in BREAKER_OUTCOMES.items()
                    ),
                )
            for name, state in breakers.reported.states().items():
                m.breaker_state.labels(name).set(BREAKER_STATE_VALUES.get(state, 2))
            transitions = breakers.reported.transitions().items()
            self._deltas.fold(m.breaker_transitions, ((k, float(n)) for k, n in transitions))

        if "db" in built:
            pool = self.services.db.pool_stats()
            if pool is not None:
                m.pool_connections.labels("checked_out").set(pool["checked_out"])
                m.pool_connections.labels("idle").set(pool["checked_in"] or 0)
                m.pool_connections.labels("overflow").set(pool["overflow"])
                self._deltas.fold(m.slow_queries, [((), pool["slow_queries"])])
        if "secrets" in built:
            cache = self.services.secrets.cache_stats()
            self._deltas.fold(
                m.secret_cache, [(("hit",), cache["hits"]), (("miss",), cache["misses"])]
            )
        self._usage_metrics()
        m.sample_process()

    def _usage_metrics(self) -> None:
        usage = self.usage.stats()
        self.metrics.usage_buffered.set(usage["buffered"])
        self.metrics.usage_oldest.set(usage["oldest_seconds"] or 0.0)
        drops = [((reason,), rows) for reason, rows in usage["drops"].items()]
        self._deltas.fold(self.metrics.usage_dropped, drops)

    async def metrics_text(self) -> bytes:
        await self.sync_metrics()
        return self.metrics.render()

    async def _report_instance(self) -> None:
        """This instance's row in ``runtime_instances``: its pool, for ``revoctl db pool``;
        and once a minute its CPU and memory into ``system_metrics``."""
        from revoctl.core.db.models import RuntimeInstance, SystemMetrics

        db = self.services.db
        await db.ensure_schema()
        now = datetime.now(UTC)
        sample = (now - self.started_at).total_seconds() % SYSTEM_SAMPLE_SECONDS
        async with db.get_async_session() as session:
            await session.merge(
                RuntimeInstance(
                    instance=self.instance,
                    started_at=self.started_at,
                    seen_at=now,
                    pool=db.pool_stats() or {},
                    details={"version": __version__, "pid": os.getpid()},
                )
            )
            if sample < INSTANCE_REPORT_SECONDS:
                process = self.metrics.sample_process()
                for name, value in process.items():
                    session.add(
                        SystemMetrics(
                            name=f"process_{name}",
                            value=value,
                            labels={"instance": self.instance},
                            ts=now,
                        )
                    )

    async def readiness(self) -> dict[str, Any]:
        """Ready: started and, when keys are required, holding them (read at least once).

        The database is not asked: every instance shares it, so its outage would take every
        instance out of the load balancer at once, while each can still serve (keys are
        checked in memory, limits and breakers live in their stores, usage rows wait in the
        buffer). ``/health`` reports it; here a failing key refresh is only noted.
        """
        if not self._ready:
            return {"ready": False, "reason": "starting or stopping"}
        if self.keys is not None and not self.keys.loaded:
            return {"ready": False, "reason": f"gateway keys not read yet: {self.keys.last_error}"}
        if self.keys is not None and self.keys.last_error:
            return {"ready": True, "note": f"serving the keys last read: {self.keys.last_error}"}
        return {"ready": True}


async def _first_chunk(
    provider: Provider, request: ChatRequest, model: str
) -> tuple[AsyncIterator[ChatChunk], ChatChunk]:
    """Open the provider's stream and wait for its first chunk (the breaker times this)."""
    stream = provider.stream(request, model)
    try:
        first = await anext(stream)
    except BaseException:
        await _aclose(stream)
        raise
    return stream, first


async def _aclose(stream: AsyncIterator[ChatChunk]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


async def relay(
    gateway: Gateway, exchange: Exchange, stream: AsyncIterator[ChatChunk], first: ChatChunk
) -> AsyncIterator[bytes]:
    """The client's SSE stream: chunks relabelled with the model that answers, the usage
    chunk only when the client asked for it, ``[DONE]`` at the end; a failure after the
    first chunk ends the stream with an error event."""
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
        error = HttpError(502, f"the stream from {served_by!r} broke: {exc}", kind="server_error")
        yield b"data: " + json.dumps(error.body()).encode() + b"\n\n"
    finally:
        exchange.provider_seconds += waited
        await _aclose(stream)
        await gateway.settle(exchange, usage)
        gateway.record(exchange, status, usage, method="POST", path=exchange.route)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def _whole(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _duration(seconds: float) -> str:
    """OpenAI's reset format: ``1s``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{secs}s"
