"""The response cache (``[gateway.cache]``): exact-match answers of deterministic requests.

A non-streamed chat request is *cacheable* when it is deterministic: its ``temperature``
is 0, or its ``metadata`` asks with ``"cache": true`` (or ``"true"``: OpenAI's metadata
values are strings). Its cache key (`cache_key`) is a
SHA-256 of its scope, its model and its normalized body: the checked request with sorted
keys, without ``stream``, ``stream_options``, ``user`` and the ``metadata.cache`` flag. The
scope keeps callers apart: ``scope = "key"`` (the default) is the key's name, so no caller
is ever answered from another key's requests; ``scope = "tier"`` shares the answers of one
tier's keys (a key with no tier keeps its own). The key is a hash: no key name, secret or
prompt is ever in clear in the store.

The route (`revoctl.runtime.routes.chat`) looks the request up once it is checked and
before anything is charged. A *hit* is answered from the store with ``x-revoctl-cache:
hit``: no provider is called, no rule, budget or slot is charged, and its row is written
with a model call of provider ``cache``, 0 tokens and cost 0. A *miss* is charged and
answered as usual; its answer (when the requested model itself gave it, and its JSON is
at most ``max_bytes``) is stored for ``ttl_seconds`` before the response goes, with
``x-revoctl-cache: miss``. Streamed and non-deterministic requests never touch the cache.

The store follows ``[limits] store`` (`revoctl.runtime.response_cache_stores`): Redis keys
under the limits' prefix, the ``response_cache`` table, or this process's memory. Every
lookup is counted in ``revoctl_cache_requests_total{model,outcome}`` (``hit``, ``miss``,
``too_large``, ``not_stored``, ``error``). A store that fails or takes longer than
``[limits] timeout_seconds`` never fails a request: it is a miss (``error``), logged at
most once a minute.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response

from revoctl.core._stores import StoreKind
from revoctl.core.errors import first_line
from revoctl.core.gateway.settings import CacheScope
from revoctl.runtime.response_cache_stores import MemoryCacheStore, RedisCacheStore, SqlCacheStore

if TYPE_CHECKING:
    from revoctl.core.gateway.settings import ResponseCacheConfig
    from revoctl.core.services import Services
    from revoctl.runtime.exchange import Exchange
    from revoctl.runtime.metrics import GatewayMetrics
    from revoctl.runtime.providers import ChatResponse
    from revoctl.runtime.usage import UsageLog

logger = logging.getLogger("revoctl.gateway")

CACHE_HEADER = "x-revoctl-cache"
"""The response header of a cacheable request: ``hit``, or ``miss`` when its answer was stored."""

CACHE_PROVIDER = "cache"
"""The provider of a hit's usage row (0 tokens, cost 0)."""

LOG_EVERY_SECONDS = 60.0
"""A failing store is logged at most once in this interval."""

_DROPPED = ("stream", "stream_options", "user")
"""Request fields that do not change the answer's content."""


class CacheStore(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, answer: bytes, ttl_seconds: int) -> None: ...

    async def close(self) -> None: ...


def cacheable(request: dict[str, Any]) -> bool:
    """Whether a request may be answered from the cache: not streamed, and deterministic
    (``temperature`` 0, or ``metadata.cache`` true or ``"true"``)."""
    if request.get("stream"):
        return False
    metadata = request.get("metadata")
    if isinstance(metadata, dict):
        asked = metadata.get("cache")
        if asked is True or asked == "true":  # not 1, which equals True
            return True
    temperature = request.get("temperature")
    return (
        isinstance(temperature, int | float)
        and not isinstance(temperature, bool)
        and (temperature == 0)
    )


def normalized(request: dict[str, Any]) -> str:
    """The request as the cache compares it: sorted keys, compact, without the fields of
    `_DROPPED` and the ``metadata.cache`` flag, integral numbers alike (``0.0`` is ``0``)."""
    body = {k: v for k, v in request.items() if k not in _DROPPED}
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        rest = {k: v for k, v in metadata.items() if k != "cache"}
        if rest:
            body["metadata"] = rest
        else:
            del body["metadata"]
    return json.dumps(_numbers(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _numbers(value: Any) -> Any:
    """``value`` with every integral float as an int: ``0.0`` and ``0`` ask the same."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def scope_of(exchange: Exchange, scope: CacheScope) -> str:
    """Whose answers ``exchange`` may be served: its key's, or its tier's (``scope =
    "tier"``, a key of a tier); ``anonymous`` without keys."""
    caller = exchange.caller
    tier = caller.record.tier if caller.record is not None else None
    if scope is CacheScope.TIER and tier:
        return f"tier:{tier}"
    return f"key:{caller.key_name}" if caller.key_name else "anonymous"


def cache_key(scope: str, model: str, request: dict[str, Any]) -> str:
    """The store key of a request: SHA-256 (hex) of its scope, model and normalized body."""
    text = json.dumps([scope, model, normalized(request)], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class ResponseCache:
    """Looks requests up and keeps answers, in the store ``[limits] store`` names."""

    def __init__(
        self,
        config: ResponseCacheConfig,
        open_store: Callable[[], Awaitable[CacheStore]],
        metrics: GatewayMetrics,
        *,
        timeout_seconds: float,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.timeout_seconds = timeout_seconds
        self._open_store = open_store
        self._store: CacheStore | None = None
        self._opening = asyncio.Lock()
        self._logged_at = -LOG_EVERY_SECONDS

    def key_for(self, exchange: Exchange) -> str | None:
        """``exchange``'s cache key; None when the cache is off or the request is not
        cacheable (streamed, not deterministic, an embedding)."""
        if not self.config.enabled or exchange.embedding or not cacheable(exchange.request):
            return None
        return cache_key(scope_of(exchange, self.config.scope), exchange.model, exchange.request)

    async def lookup(self, exchange: Exchange, key: str) -> ChatResponse | None:
        """The stored answer under ``key``, if any (a store failure is a miss)."""
        try:
            raw = await asyncio.wait_for(self._call("get", key), self.timeout_seconds)
            answer = json.loads(raw) if raw is not None else None
        except Exception as exc:
            self._failed(exc)
            self._count(exchange, "error")
            return None
        if not isinstance(answer, dict):
            return None  # a miss: counted by `keep`
        self._count(exchange, "hit")
        return answer

    async def keep(self, exchange: Exchange, key: str, answer: ChatResponse) -> bool:
        """Store ``answer`` under ``key`` when the requested model gave it and it fits
        ``max_bytes``; whether it was stored."""
        if exchange.served_by != exchange.model:
            self._count(exchange, "not_stored")
            return False
        raw = json.dumps(answer, separators=(",", ":"), ensure_ascii=False).encode()
        if len(raw) > self.config.max_bytes:
            self._count(exchange, "too_large")
            return False
        try:
            await asyncio.wait_for(
                self._call("put", key, raw, self.config.ttl_seconds), self.timeout_seconds
            )
        except Exception as exc:
            self._failed(exc)
            self._count(exchange, "error")
            return False
        self._count(exchange, "miss")
        return True

    async def _call(self, method: str, *args: Any) -> Any:
        if self._store is None:
            async with self._opening:
                if self._store is None:
                    self._store = await self._open_store()
        return await getattr(self._store, method)(*args)

    def _count(self, exchange: Exchange, outcome: str) -> None:
        self.metrics.cache_requests.labels(exchange.model, outcome).inc()

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_SECONDS:
            self._logged_at = now
            what = "timed out" if isinstance(exc, TimeoutError) else first_line(exc)
            logger.warning("response cache store failed: %s: %s", type(exc).__name__, what)

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None


def answered_from_cache(usage: UsageLog, exchange: Exchange, answer: ChatResponse) -> Response:
    """A hit's response: the stored answer, nothing charged; its row (a model call of
    provider ``cache``, 0 tokens, cost 0) is written once the response is sent."""
    exchange.settled = True  # nothing was charged: nothing to settle
    exchange.served_by = exchange.model
    exchange.provider = CACHE_PROVIDER
    headers = {**exchange.headers(), CACHE_HEADER: "hit"}
    row = BackgroundTask(usage.record, exchange, 200, None, cached=True)
    return JSONResponse(answer, headers=headers, background=row)


def open_cache_store(services: Services) -> Callable[[], Awaitable[CacheStore]]:
    """How to open the store ``[limits] store`` names (opened at the first lookup)."""
    limits = services.settings.limits

    async def open_store() -> CacheStore:
        if limits.store is StoreKind.REDIS:
            client = await services.store_context().open_redis(pool_wait=limits.pool_wait_seconds)
            return RedisCacheStore(client, limits.key_prefix + "cache:")
        if limits.store is StoreKind.SQL:
            return SqlCacheStore(services.db)
        return MemoryCacheStore()

    return open_store
