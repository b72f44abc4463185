"""Rate limiting: rules, the limiter that applies them, and the stores their counters live in.

`RateLimiter.check_rate_limit` is one store call per decision: on Redis one EVALSHA,
on SQL one short transaction, in memory one dict update. Names resolve lazily
(PEP 562): the CLI's ``limits rules`` never imports a back end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._lazy import lazy_exports
from revoctl.core.limits.settings import (
    FailureMode,
    LimitsConfig,
    LimitStoreKind,
    RateLimitAlgorithm,
    RateLimitRule,
    RateLimitScope,
)

if TYPE_CHECKING:
    from revoctl.core.limits._limiter import CheckRun, KeyState, RateLimiter
    from revoctl.core.limits._log import RateLimitEvent, RateLimitLogWriter, SqlRateLimitLogSink
    from revoctl.core.limits._simulate import Simulation, simulate
    from revoctl.core.limits.base import LimitStore, RateLimitResult
    from revoctl.core.limits.stores import open_limit_store
    from revoctl.core.limits.stores.memory import MemoryLimitStore
    from revoctl.core.limits.stores.redis import RedisLimitStore
    from revoctl.core.limits.stores.sql import SqlLimitStore

_EXPORTS: dict[str, str] = {
    "CheckRun": "revoctl.core.limits._limiter",
    "KeyState": "revoctl.core.limits._limiter",
    "LimitStore": "revoctl.core.limits.base",
    "MemoryLimitStore": "revoctl.core.limits.stores.memory",
    "RateLimitEvent": "revoctl.core.limits._log",
    "RateLimitLogWriter": "revoctl.core.limits._log",
    "RateLimitResult": "revoctl.core.limits.base",
    "RateLimiter": "revoctl.core.limits._limiter",
    "RedisLimitStore": "revoctl.core.limits.stores.redis",
    "Simulation": "revoctl.core.limits._simulate",
    "SqlLimitStore": "revoctl.core.limits.stores.sql",
    "SqlRateLimitLogSink": "revoctl.core.limits._log",
    "open_limit_store": "revoctl.core.limits.stores",
    "simulate": "revoctl.core.limits._simulate",
}

__all__ = [
    "CheckRun",
    "FailureMode",
    "KeyState",
    "LimitStore",
    "LimitStoreKind",
    "LimitsConfig",
    "MemoryLimitStore",
    "RateLimitAlgorithm",
    "RateLimitEvent",
    "RateLimitLogWriter",
    "RateLimitResult",
    "RateLimitRule",
    "RateLimitScope",
    "RateLimiter",
    "RedisLimitStore",
    "Simulation",
    "SqlLimitStore",
    "SqlRateLimitLogSink",
    "open_limit_store",
    "simulate",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
