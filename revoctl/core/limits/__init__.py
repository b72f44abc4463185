"""Rate limiting: rules, and the stores their counters live in."""

from __future__ import annotations

from revoctl.core.limits.settings import (
    FailureMode,
    LimitsConfig,
    LimitStoreKind,
    RateLimitAlgorithm,
    RateLimitRule,
    RateLimitScope,
)

__all__ = [
    "FailureMode",
    "LimitStoreKind",
    "LimitsConfig",
    "RateLimitAlgorithm",
    "RateLimitRule",
    "RateLimitScope",
]
