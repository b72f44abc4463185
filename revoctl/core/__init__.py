"""The services the platform runtime imports; the CLI drives the same ones.

Names are resolved lazily (PEP 562) so that importing `revoctl.core` costs
nothing until a service is used: the CLI's start-up depends on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._lazy import lazy_exports

if TYPE_CHECKING:
    from revoctl.core._retry import RetryPolicy
    from revoctl.core.breakers import CircuitBreaker, CircuitBreakerManager
    from revoctl.core.breakers.settings import BreakersConfig, CircuitBreakerConfig
    from revoctl.core.db import DatabaseManager
    from revoctl.core.db.settings import DatabaseConfig
    from revoctl.core.errors import (
        BackendUnavailableError,
        CheckFailedError,
        CircuitOpenError,
        ConfigError,
        NotFoundError,
        PoolExhaustedError,
        RevoctlError,
        UsageError,
    )
    from revoctl.core.limits import RateLimiter, RateLimitResult
    from revoctl.core.limits.settings import (
        LimitsConfig,
        RateLimitAlgorithm,
        RateLimitRule,
        RateLimitScope,
    )
    from revoctl.core.redis import RedisConfig
    from revoctl.core.secrets import SecretManager
    from revoctl.core.secrets.settings import SecretConfig, SecretProvider
    from revoctl.core.services import Services, load_services

__getattr__, __dir__ = lazy_exports(__name__)
