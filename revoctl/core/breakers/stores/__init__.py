"""The breaker state stores, and the one factory that builds the configured one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._stores import StoreBuilders, StoreContext, StoreKind, open_store
from revoctl.core.breakers.base import STORE_POOL_WAIT

if TYPE_CHECKING:
    from revoctl.core.breakers.base import BreakerStateStore
    from revoctl.core.breakers.settings import BreakersConfig


async def open_breaker_store(config: BreakersConfig, context: StoreContext) -> BreakerStateStore:
    """The store ``[breakers] store`` names: memory, Redis or the database behind
    ``context.db``. A call waits at most `STORE_POOL_WAIT` for a free pooled connection.

    :raises ConfigError: the Redis URL is invalid or its secret cannot be resolved.
    """
    return await open_store(BREAKER_STORES, config.store, config, context)


async def _memory(config: BreakersConfig, context: StoreContext) -> BreakerStateStore:
    from revoctl.core.breakers.stores.memory import MemoryBreakerStateStore

    return MemoryBreakerStateStore(history_limit=config.history_limit)


async def _redis(config: BreakersConfig, context: StoreContext) -> BreakerStateStore:
    from revoctl.core.breakers.stores.redis import RedisBreakerStateStore

    client = await context.open_redis(pool_wait=STORE_POOL_WAIT)
    return RedisBreakerStateStore(
        client, context.redis, prefix=config.key_prefix, history_limit=config.history_limit
    )


async def _sql(config: BreakersConfig, context: StoreContext) -> BreakerStateStore:
    from revoctl.core.breakers.stores.sql import SqlBreakerStateStore

    return SqlBreakerStateStore(context.db, history_limit=config.history_limit)


BREAKER_STORES: StoreBuilders[BreakersConfig, BreakerStateStore] = {
    StoreKind.MEMORY: _memory,
    StoreKind.REDIS: _redis,
    StoreKind.SQL: _sql,
}
