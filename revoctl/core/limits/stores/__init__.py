"""The limit stores, and the one factory that builds the configured one."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from revoctl.core.limits.settings import LimitsConfig, LimitStoreKind
from revoctl.core.references import SecretReader

if TYPE_CHECKING:
    from revoctl.core.db import DatabaseManager
    from revoctl.core.limits.base import LimitStore
    from revoctl.core.redis import RedisConfig


async def open_limit_store(
    config: LimitsConfig,
    *,
    redis: RedisConfig,
    db: Callable[[], DatabaseManager],
    read_secret: SecretReader | None = None,
) -> LimitStore:
    """The store ``[limits] store`` names: memory, Redis (through `open_redis`, so TLS,
    ``${secret:...}`` URLs and clusters work as everywhere) or the database behind ``db()``.

    A remote store's calls wait at most ``config.pool_wait_seconds`` for a free connection.

    :raises ConfigError: the Redis URL is invalid or its secret cannot be resolved.
    """
    if config.store is LimitStoreKind.MEMORY:
        from revoctl.core.limits.stores.memory import MemoryLimitStore

        return MemoryLimitStore()
    if config.store is LimitStoreKind.REDIS:
        from revoctl.core.limits.stores.redis import RedisLimitStore
        from revoctl.core.redis import open_redis

        client = await open_redis(redis, read_secret, pool_wait=config.pool_wait_seconds)
        return RedisLimitStore(
            client, redis, prefix=config.key_prefix, call_timeout=config.timeout_seconds
        )
    from revoctl.core.limits.stores.sql import SqlLimitStore

    return SqlLimitStore(db(), pool_wait=config.pool_wait_seconds)
