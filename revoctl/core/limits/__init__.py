"""Rate limiting: rules, the limiter that applies them, and the stores their counters live in.

`RateLimiter.check_rate_limit` is one store call per decision: on Redis one EVALSHA,
on SQL one short transaction, in memory one dict update. Names resolve lazily
(PEP 562): the CLI's ``limits rules`` never imports a back end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._lazy import lazy_exports

if TYPE_CHECKING:
    from revoctl.core._stores import StoreKind
    from revoctl.core.limits._limiter import RateLimiter
    from revoctl.core.limits._log import RateLimitEvent, RateLimitLogWriter, SqlRateLimitLogSink
    from revoctl.core.limits._operator import CheckRun, KeyState
    from revoctl.core.limits._simulate import Simulation, simulate
    from revoctl.core.limits.base import LimitStore, RateLimitResult
    from revoctl.core.limits.settings import (
        FailureMode,
        LimitsConfig,
        RateLimitAlgorithm,
        RateLimitRule,
        RateLimitScope,
    )
    from revoctl.core.limits.stores import open_limit_store
    from revoctl.core.limits.stores.memory import MemoryLimitStore
    from revoctl.core.limits.stores.redis import RedisLimitStore
    from revoctl.core.limits.stores.sql import SqlLimitStore

__getattr__, __dir__ = lazy_exports(__name__)
