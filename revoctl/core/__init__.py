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

_EXPORTS: dict[str, str] = {
    "BackendUnavailableError": "revoctl.core.errors",
    "BreakersConfig": "revoctl.core.breakers.settings",
    "CheckFailedError": "revoctl.core.errors",
    "CircuitBreaker": "revoctl.core.breakers",
    "CircuitBreakerConfig": "revoctl.core.breakers.settings",
    "CircuitBreakerManager": "revoctl.core.breakers",
    "CircuitOpenError": "revoctl.core.errors",
    "ConfigError": "revoctl.core.errors",
    "DatabaseConfig": "revoctl.core.db.settings",
    "DatabaseManager": "revoctl.core.db",
    "LimitsConfig": "revoctl.core.limits.settings",
    "NotFoundError": "revoctl.core.errors",
    "PoolExhaustedError": "revoctl.core.errors",
    "RateLimitAlgorithm": "revoctl.core.limits.settings",
    "RateLimitRule": "revoctl.core.limits.settings",
    "RateLimitResult": "revoctl.core.limits",
    "RateLimitScope": "revoctl.core.limits.settings",
    "RateLimiter": "revoctl.core.limits",
    "RedisConfig": "revoctl.core.redis",
    "RetryPolicy": "revoctl.core._retry",
    "RevoctlError": "revoctl.core.errors",
    "SecretConfig": "revoctl.core.secrets.settings",
    "SecretManager": "revoctl.core.secrets",
    "SecretProvider": "revoctl.core.secrets.settings",
    "Services": "revoctl.core.services",
    "UsageError": "revoctl.core.errors",
    "load_services": "revoctl.core.services",
}

__all__ = [
    "BackendUnavailableError",
    "BreakersConfig",
    "CheckFailedError",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerManager",
    "CircuitOpenError",
    "ConfigError",
    "DatabaseConfig",
    "DatabaseManager",
    "LimitsConfig",
    "NotFoundError",
    "PoolExhaustedError",
    "RateLimitAlgorithm",
    "RateLimitResult",
    "RateLimitRule",
    "RateLimitScope",
    "RateLimiter",
    "RedisConfig",
    "RetryPolicy",
    "RevoctlError",
    "SecretConfig",
    "SecretManager",
    "SecretProvider",
    "Services",
    "UsageError",
    "load_services",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
