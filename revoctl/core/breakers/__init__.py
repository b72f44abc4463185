"""Circuit breakers: per-breaker thresholds, and where their shared state lives."""

from __future__ import annotations

from revoctl.core.breakers.settings import (
    PREDEFINED_BREAKERS,
    BreakersConfig,
    BreakerStoreKind,
    CircuitBreakerConfig,
)

__all__ = [
    "PREDEFINED_BREAKERS",
    "BreakerStoreKind",
    "BreakersConfig",
    "CircuitBreakerConfig",
]
