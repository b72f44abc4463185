"""The limit stores, and the one factory that builds the configured one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._stores import StoreBuilders, StoreContext, StoreKind, open_store

if TYPE_CHECKING:
    from revoctl.core.limits.base import LimitStore
    from revoctl.core.limits.settings import LimitsConfig


async def open_limit_store(config: LimitsConfig, context: StoreContext) -> LimitStore:
    """The store ``[limits] store`` names: memory, Redis or the database behind ``context.db``.

    A remote store's calls wait at most ``config.pool_wait_seconds`` for a free connection.

    :raises ConfigError: the Redis URL is invalid or its secret cannot be resolved.
    """
    return await open_store(LIMIT_STORES, config.store, config, context)


async def _memory(config: LimitsConfig, context: StoreContext) -> LimitStore:
    from revoctl.core.limits.stores.memory import MemoryLimitStore

    return MemoryLimitStore()


async def _redis(config: LimitsConfig, context: StoreContext) -> LimitStore:
    from revoctl.core.limits.stores.redis import RedisLimitStore

    client = await context.open_redis(pool_wait=config.pool_wait_seconds)
    return RedisLimitStore(
        client, context.redis, prefix=config.key_prefix, call_timeout=config.timeout_seconds
    )


async def _sql(config: LimitsConfig, context: StoreContext) -> LimitStore:
    from revoctl.core.limits.stores.sql import SqlLimitStore

    return SqlLimitStore(context.db(), pool_wait=config.pool_wait_seconds)


LIMIT_STORES: StoreBuilders[LimitsConfig, LimitStore] = {
    StoreKind.MEMORY: _memory,
    StoreKind.REDIS: _redis,
    StoreKind.SQL: _sql,
}
