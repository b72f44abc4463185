"""`Gateway`: the runtime's parts over the core services, and their start and stop.

A chat request reads top to bottom in its route (`revoctl.runtime.routes.chat`):

1. its body is read within a bound (`revoctl.runtime.bodies`);
2. the caller is identified: a gateway key when required, the request's ``user`` field,
   the client address (`revoctl.runtime.identity`);
3. the body is checked, for a configured model the caller's tier allows;
4. it is charged before any provider is called (`revoctl.runtime.charging`): its rules,
   its key's budget and parallel slot, in one reservation per hash tag;
5. the model, else its (allowed) fallbacks, answer: each on one of its deployments, through
   that deployment's breaker, with retries on the others (`revoctl.runtime.routing`);
6. the answer is sent (a stream relayed chunk by chunk), and then settled: what its usage
   shows was not used is refunded, the budget moves to the real cost, the slot is freed,
   and its row goes to the usage writer (`revoctl.runtime.usage`).

A charge is settled once, on every path (`revoctl.runtime.charges`): the answer, a refusal,
a broken stream, a client gone mid-stream, an unexpected error. A settlement that must not
be cut by a cancellation (a stream's end, a client gone) runs as a task of its own
(`settle_soon`), which `stop` waits for.

Any refusal on the way is raised as `GatewayError` and rendered once, by the handler
`revoctl.runtime.app` registers (`Gateway.refuse`): what the request was charged is given
back, its response shows the caller's rules, and its row is written with what is known of
it by then (the key, the ``user`` and the model the body named, the status and the code).

In the background the gateway folds the services' counters into the metrics
(`revoctl.runtime.metrics`), reports this instance to the fleet
(`revoctl.runtime.instance`), follows secret changes (`revoctl.runtime.watch`) and shares its
deployments' loads with the fleet (`revoctl.runtime.fleet_load`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from revoctl.core._periodic import every
from revoctl.core.db.models import MODEL_NAME_LENGTH
from revoctl.core.errors import first_line
from revoctl.runtime.bodies import checked_chat, checked_embedding, model_named, user_named
from revoctl.runtime.charging import Charging
from revoctl.runtime.errors import GatewayError
from revoctl.runtime.exchange import Exchange
from revoctl.runtime.identity import Identity
from revoctl.runtime.instance import INSTANCE_REPORT_SECONDS, Instance
from revoctl.runtime.metrics import METRICS_SYNC_SECONDS
from revoctl.runtime.metrics_sync import MetricsSync
from revoctl.runtime.response_cache import ResponseCache, open_cache_store
from revoctl.runtime.routing import Routing
from revoctl.runtime.usage import MAX_USER_LENGTH, UsageLog
from revoctl.runtime.watch import SecretChangeWatcher

if TYPE_CHECKING:
    from starlette.requests import Request

    from revoctl.core.services import Services
    from revoctl.runtime.identity import Caller
    from revoctl.runtime.metrics import GatewayMetrics
    from revoctl.runtime.providers import Usage

logger = logging.getLogger("revoctl.gateway")

SECRET_WATCH_SECONDS = 1.0


class Gateway:
    """The runtime's parts: identity, charging, routing, usage, metrics, this instance."""

    def __init__(self, services: Services, metrics: GatewayMetrics) -> None:
        self.services = services
        self.metrics = metrics
        self.config = services.settings.gateway
        self.models = dict(services.settings.models)
        self.identity = Identity(self.config, dict(services.settings.tiers))
        self.charging = Charging(services, self.config, self.models)
        self.routing = Routing(services, self.models, metrics)
        self.usage = UsageLog(
            lambda: services.db, self.models, metrics, capacity=self.config.usage_buffer
        )
        self.cache = ResponseCache(
            self.config.cache,
            open_cache_store(services),
            metrics,
            timeout_seconds=services.settings.limits.timeout_seconds,
        )
        self.metrics_sync = MetricsSync(services, metrics, self.usage.stats)
        self.instance = Instance(services, metrics)
        self._tasks: list[asyncio.Task[None]] = []
        self._settling: set[asyncio.Task[None]] = set()

    @classmethod
    def of(cls, request: Request) -> Gateway:
        """The gateway serving ``request`` (the lifespan's state)."""
        gateway: Gateway = request.state.gateway
        return gateway

    async def start(self) -> None:
        """Load the keys, start the background work.

        The limiter and the breakers are built now, so a configuration that cannot
        work fails at start-up, not at the first request.
        """
        services = self.services
        self.metrics_sync.attach()
        await services.limiter.initialize()
        await services.breakers.initialize()
        await self.identity.start(services.keys)
        watcher = SecretChangeWatcher(services.db, services.secrets)
        try:
            await watcher.check()  # from now on, a change made anywhere drops our cached value
        except Exception as exc:  # the database may be away: the watcher tries again each second
            logger.warning(
                "secret changes not followed yet: %s: %s", type(exc).__name__, first_line(exc)
            )
        background = [
            (METRICS_SYNC_SECONDS, self.metrics_sync.sync, "metrics sync"),
            (INSTANCE_REPORT_SECONDS, self.instance.report, "instance report"),
            (SECRET_WATCH_SECONDS, watcher.check, "secret changes"),
        ]
        rotation = services.settings.secrets.rotation.interval_seconds
        if rotation > 0:  # [secrets.rotation]: one instance at a time, under a lease
            background.append((rotation, self.instance.rotate_secrets, "secret rotation"))
        fleet = self.routing.start()  # the deployments' loads, for least_busy / lowest_latency
        if fleet is not None:
            background.append((fleet.refresh_seconds, fleet.refresh, "routing loads"))
        self._tasks = [asyncio.create_task(every(s, job, what=what)) for s, job, what in background]
        # Retention's first run is one interval after start, not at once: pruning while the
        # first requests write their rows is work the start-up need not do (and on SQLite a
        # prune at start raced the usage writer into a hang at shutdown: seen in CI).
        retention = services.settings.retention.interval_seconds
        self._tasks.append(
            asyncio.create_task(every(retention, self.instance.retain, what="retention", now=False))
        )
        self.instance.ready = True

    async def stop(self, flush_seconds: float) -> None:
        """Stop the background work, flush the usage rows (for at most ``flush_seconds``),
        close the providers."""
        self.instance.ready = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._settling, return_exceptions=True)
        await self.identity.stop()
        await self.usage.writer.close(flush_seconds)
        self.metrics_sync.sync_usage()  # what shutdown dropped is counted too
        await self.routing.close()
        await self.cache.close()

    async def identify(self, request: Request, body: Any) -> Caller:
        """Who asks (`Identity.identify`, with the ``user`` ``body`` names). The request's
        state keeps the caller and the model and ``user`` the body names, so that a refusal
        still has its row and its headers (`refuse`).

        :raises GatewayError: 401 when keys are required and the request has no valid one.
        """
        model, user = model_named(body), user_named(body)
        state = request.state
        state.model = model[:MODEL_NAME_LENGTH] if model else None
        state.user = user[:MAX_USER_LENGTH] if user else None
        state.caller = None  # asked once: a refusal does not ask again (`_caller_of`)
        caller = state.caller = await self.identity.identify(request, user)
        return caller

    def exchange(
        self,
        request: Request,
        caller: Caller,
        body: Any,
        started: float,
        *,
        embedding: bool = False,
    ) -> Exchange:
        """``body``, checked (as a chat request, or an embeddings one when ``embedding``), as
        the exchange the rest of the request carries; from here on a refusal gives back what
        was charged (`refuse`).

        :raises GatewayError: 400 for a malformed body, 404 for a model that is not
            configured, 403 for a model the caller's tier does not allow.
        """
        if embedding:
            asked = checked_embedding(body, self.models)
        else:
            asked = checked_chat(body, self.models, self.config.default_max_tokens)
        exchange = Exchange(
            model=asked["model"],
            request=asked,
            embedding=embedding,
            caller=caller,
            route=request.url.path,
            request_id=request.state.request_id,
            started=started,
        )
        request.state.model = exchange.model
        request.state.exchange = exchange
        if not caller.allows(exchange.model):
            raise GatewayError(
                403,
                f"the key {caller.key_name!r} may not call the model {exchange.model!r} "
                "(its tier's models)",
                code="model_not_allowed",
            )
        return exchange

    async def charge(self, exchange: Exchange) -> None:
        """Charge the exchange's request on every rule, budget and slot that applies
        (`Charging.charge`); ``exchange.charge`` holds what was taken, for its headers and
        its settlement.

        :raises GatewayError: 429 when denied now, 413 when it can never be allowed.
        """
        await self.charging.charge(exchange)

    async def rate_limit_headers(
        self, caller: Caller, model: str | None = None
    ) -> list[tuple[str, str]]:
        """The state of ``caller``'s rules (and ``model``'s, a configured one), read without
        consuming: the headers of a response that charged nothing."""
        return (await self.charging.read(caller, model)).headers()

    async def settle(self, exchange: Exchange, usage: Usage | None, status: int = 200) -> None:
        """After the answer: settle its charge to its usage (`Charging.settle`), write its
        row; once, whichever path asks first."""
        if exchange.settled:
            return
        exchange.settled = True
        try:
            await self.charging.settle(exchange, usage)
        finally:
            self.usage.record(exchange, status, usage)

    def settle_soon(self, exchange: Exchange, usage: Usage | None, status: int) -> None:
        """`settle`, as a task of its own: for a stream's end, where the response's own task
        may be cancelled (its client gone) while the settlement runs."""
        if not exchange.settled:
            self._in_background(self.settle(exchange, usage, status))

    def _in_background(self, settling: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(settling)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    def abandon(self, request: Request) -> None:
        """An unexpected error ended the request: whatever it was charged is given back
        (its slot above all, which would else be held until its lease runs out)."""
        exchange: Exchange | None = getattr(request.state, "exchange", None)
        if exchange is not None:
            self._in_background(self.charging.release(exchange.charge))

    async def refuse(self, request: Request, error: GatewayError) -> list[tuple[str, str]]:
        """A refusal: give back what the request was charged (nothing was answered, nothing
        is owed), write its row; returns its headers, the caller's rules' among them."""
        exchange: Exchange | None = getattr(request.state, "exchange", None)
        if exchange is not None:
            exchange.settled = True
            await self.charging.release(exchange.charge)
            self.usage.record(exchange, error.status, None, error.code)
            if exchange.charge.entries:
                return [*error.headers, *exchange.charge.headers()]
            caller: Caller | None = exchange.caller  # refused before its charge was taken
        else:
            caller = await self._caller_of(request)
            self.usage.record_request(request, caller, error.status, error.code)
        if caller is None:  # not authenticated: no rule of anyone's to show
            return error.headers
        model = getattr(request.state, "model", None)
        configured = model if model in self.models else None
        return [*error.headers, *await self.rate_limit_headers(caller, configured)]

    async def _caller_of(self, request: Request) -> Caller | None:
        """The caller `identify` found; for a request refused before it was asked (its body
        could not be read), the key it presents, if valid; None when there is none."""
        state = request.state
        if hasattr(state, "caller"):
            caller: Caller | None = state.caller
            return caller
        try:
            return await self.identity.identify(request, None)
        except GatewayError:
            return None

    def readiness(self) -> dict[str, Any]:
        """``/health/ready``'s verdict (`Instance.readiness`)."""
        return self.instance.readiness(self.identity.keys)

    async def metrics_text(self) -> bytes:
        """``/metrics``: the families brought up to date, as exposition text."""
        await self.metrics_sync.sync()
        return self.metrics.render()
