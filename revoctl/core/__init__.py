"""The services the platform runtime imports; the CLI drives the same ones.

Names are resolved lazily (PEP 562) so that importing `revoctl.core` costs
nothing until a service is used: the CLI's start-up depends on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._lazy import lazy_exports

if TYPE_CHECKING:
    from revoctl.core._retry import RetryPolicy as RetryPolicy
    from revoctl.core.breakers import CircuitBreaker as CircuitBreaker
    from revoctl.core.breakers import CircuitBreakerManager as CircuitBreakerManager
    from revoctl.core.breakers.settings import BreakersConfig as BreakersConfig
    from revoctl.core.breakers.settings import CircuitBreakerConfig as CircuitBreakerConfig
    from revoctl.core.db import DatabaseManager as DatabaseManager
    from revoctl.core.db.settings import DatabaseConfig as DatabaseConfig
    from revoctl.core.errors import BackendUnavailableError as BackendUnavailableError
    from revoctl.core.errors import CheckFailedError as CheckFailedError
    from revoctl.core.errors import CircuitOpenError as CircuitOpenError
    from revoctl.core.errors import ConfigError as ConfigError
    from revoctl.core.errors import NotFoundError as NotFoundError
    from revoctl.core.errors import PoolExhaustedError as PoolExhaustedError
    from revoctl.core.errors import RevoctlError as RevoctlError
    from revoctl.core.errors import UsageError as UsageError
    from revoctl.core.limits import RateLimiter as RateLimiter
    from revoctl.core.limits import RateLimitResult as RateLimitResult
    from revoctl.core.limits.settings import LimitsConfig as LimitsConfig
    from revoctl.core.limits.settings import RateLimitAlgorithm as RateLimitAlgorithm
    from revoctl.core.limits.settings import RateLimitRule as RateLimitRule
    from revoctl.core.limits.settings import RateLimitScope as RateLimitScope
    from revoctl.core.redis import RedisConfig as RedisConfig
    from revoctl.core.secrets import SecretManager as SecretManager
    from revoctl.core.secrets.settings import SecretConfig as SecretConfig
    from revoctl.core.secrets.settings import SecretProvider as SecretProvider
    from revoctl.core.services import Services as Services
    from revoctl.core.services import load_services as load_services

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
    "RateLimitResult": "revoctl.core.limits",
    "RateLimitRule": "revoctl.core.limits.settings",
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

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
