"""Rate limiting: rules, the limiter that applies them, and the stores their counters live in.

`RateLimiter.check_rate_limit` is one store call per decision: on Redis one EVALSHA,
on SQL one short transaction, in memory one dict update. Names resolve lazily
(PEP 562): the CLI's ``limits rules`` never imports a back end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._lazy import lazy_exports

if TYPE_CHECKING:
    from revoctl.core._stores import StoreKind as StoreKind
    from revoctl.core.limits._limiter import CheckRun as CheckRun
    from revoctl.core.limits._limiter import KeyState as KeyState
    from revoctl.core.limits._limiter import RateLimiter as RateLimiter
    from revoctl.core.limits._log import RateLimitEvent as RateLimitEvent
    from revoctl.core.limits._log import RateLimitLogWriter as RateLimitLogWriter
    from revoctl.core.limits._log import SqlRateLimitLogSink as SqlRateLimitLogSink
    from revoctl.core.limits._simulate import Simulation as Simulation
    from revoctl.core.limits._simulate import simulate as simulate
    from revoctl.core.limits.base import LimitStore as LimitStore
    from revoctl.core.limits.base import RateLimitResult as RateLimitResult
    from revoctl.core.limits.settings import FailureMode as FailureMode
    from revoctl.core.limits.settings import LimitsConfig as LimitsConfig
    from revoctl.core.limits.settings import RateLimitAlgorithm as RateLimitAlgorithm
    from revoctl.core.limits.settings import RateLimitRule as RateLimitRule
    from revoctl.core.limits.settings import RateLimitScope as RateLimitScope
    from revoctl.core.limits.stores import open_limit_store as open_limit_store
    from revoctl.core.limits.stores.memory import MemoryLimitStore as MemoryLimitStore
    from revoctl.core.limits.stores.redis import RedisLimitStore as RedisLimitStore
    from revoctl.core.limits.stores.sql import SqlLimitStore as SqlLimitStore

_EXPORTS: dict[str, str] = {
    "CheckRun": "revoctl.core.limits._limiter",
    "FailureMode": "revoctl.core.limits.settings",
    "KeyState": "revoctl.core.limits._limiter",
    "LimitStore": "revoctl.core.limits.base",
    "LimitsConfig": "revoctl.core.limits.settings",
    "MemoryLimitStore": "revoctl.core.limits.stores.memory",
    "RateLimitAlgorithm": "revoctl.core.limits.settings",
    "RateLimitEvent": "revoctl.core.limits._log",
    "RateLimitLogWriter": "revoctl.core.limits._log",
    "RateLimitResult": "revoctl.core.limits.base",
    "RateLimitRule": "revoctl.core.limits.settings",
    "RateLimitScope": "revoctl.core.limits.settings",
    "RateLimiter": "revoctl.core.limits._limiter",
    "RedisLimitStore": "revoctl.core.limits.stores.redis",
    "Simulation": "revoctl.core.limits._simulate",
    "SqlLimitStore": "revoctl.core.limits.stores.sql",
    "SqlRateLimitLogSink": "revoctl.core.limits._log",
    "StoreKind": "revoctl.core._stores",
    "open_limit_store": "revoctl.core.limits.stores",
    "simulate": "revoctl.core.limits._simulate",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
