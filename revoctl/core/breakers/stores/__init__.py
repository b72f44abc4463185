"""The breaker state stores, and the one factory that builds the configured one."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from revoctl.core.breakers.base import STORE_POOL_WAIT
from revoctl.core.breakers.settings import BreakersConfig, BreakerStoreKind
from revoctl.core.references import SecretReader

if TYPE_CHECKING:
    from revoctl.core.breakers.base import BreakerStateStore
    from revoctl.core.db import DatabaseManager
    from revoctl.core.redis import RedisConfig


async def open_breaker_store(
    config: BreakersConfig,
    *,
    redis: RedisConfig,
    db: Callable[[], DatabaseManager],
    read_secret: SecretReader | None = None,
) -> BreakerStateStore:
    """The store ``[breakers] store`` names: memory, Redis (through `open_redis`, so TLS,
    ``${secret:...}`` URLs and clusters work as everywhere) or the database behind ``db()``.
    A call waits at most `STORE_POOL_WAIT` for a free pooled connection.

    :raises ConfigError: the Redis URL is invalid or its secret cannot be resolved.
    """
    if config.store is BreakerStoreKind.MEMORY:
        from revoctl.core.breakers.stores.memory import MemoryBreakerStateStore

        return MemoryBreakerStateStore(history_limit=config.history_limit)
    if config.store is BreakerStoreKind.REDIS:
        from revoctl.core.breakers.stores.redis import RedisBreakerStateStore
        from revoctl.core.redis import open_redis

        client = await open_redis(redis, read_secret, pool_wait=STORE_POOL_WAIT)
        return RedisBreakerStateStore(
            client, redis, prefix=config.key_prefix, history_limit=config.history_limit
        )
    from revoctl.core.breakers.stores.sql import SqlBreakerStateStore

    return SqlBreakerStateStore(db, history_limit=config.history_limit)
