"""Where a service keeps its state: one `StoreKind` for every service, one way to build it.

``[limits] store`` and ``[breakers] store`` name the same three back ends. Each
service lists how it builds its store on each (a `StoreBuilders` table, beside its
stores) and opens the configured one with `open_store`; what a store may need from
the process (the Redis settings, the database built on first use, the reader of
``${secret:...}`` URLs) travels as one `StoreContext`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from revoctl.core.references import SecretReader

if TYPE_CHECKING:
    from revoctl.core.db import DatabaseManager
    from revoctl.core.redis import RedisConfig


class StoreKind(StrEnum):
    """``[limits] store``, ``[breakers] store``: where a service's state lives."""

    MEMORY = "memory"
    SQL = "sql"
    REDIS = "redis"


@dataclass(frozen=True)
class StoreContext:
    """What a store may take from the process: Redis settings, the database, secrets."""

    redis: RedisConfig
    db: Callable[[], DatabaseManager]
    """The database, built on first call: only a SQL store calls it."""
    read_secret: SecretReader | None = None

    async def open_redis(self, *, pool_wait: float) -> Any:
        """A client through `open_redis` (TLS, ``${secret:...}`` URLs, clusters), whose calls
        wait at most ``pool_wait`` seconds for a free connection.

        :raises ConfigError: the Redis URL is invalid or its secret cannot be resolved.
        """
        from revoctl.core.redis import open_redis

        return await open_redis(self.redis, self.read_secret, pool_wait=pool_wait)


ConfigT = TypeVar("ConfigT")
StoreT = TypeVar("StoreT")

StoreBuilders = Mapping[StoreKind, Callable[[ConfigT, StoreContext], Awaitable[StoreT]]]
"""How one service builds its store on each `StoreKind`."""


async def open_store(
    builders: StoreBuilders[ConfigT, StoreT],
    kind: StoreKind,
    config: ConfigT,
    context: StoreContext,
) -> StoreT:
    """The store of ``kind``, built from the service's ``config``.

    :raises ConfigError: the Redis URL is invalid or its secret cannot be resolved.
    """
    return await builders[kind](config, context)
