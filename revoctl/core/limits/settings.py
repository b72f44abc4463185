"""`RateLimitRule` and `LimitsConfig`: the rules and where their counters live."""

from __future__ import annotations

import math
from enum import StrEnum

from pydantic import Field, field_validator

from revoctl.core._settings import Section
from revoctl.core._stores import StoreKind

RULE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
POOL_WAIT_SHARE = 0.5
"""The part of ``timeout_seconds`` a decision may spend waiting for a free connection."""


class RateLimitAlgorithm(StrEnum):
    """How a rule counts (CONTRACT, "Rate-limit semantics")."""

    TOKEN_BUCKET = "token_bucket"
    SLIDING_WINDOW = "sliding_window"
    FIXED_WINDOW = "fixed_window"


class RateLimitScope(StrEnum):
    """Whom one counter belongs to."""

    PER_USER = "per_user"
    PER_IP = "per_ip"
    PER_API_KEY = "per_api_key"
    GLOBAL = "global"


class FailureMode(StrEnum):
    """What a check answers while its store is unreachable."""

    OPEN = "open"
    CLOSED = "closed"


class RateLimitRule(Section):
    """One ``[[limits.rules]]`` entry."""

    name: str = Field(pattern=RULE_NAME_PATTERN)
    requests: int = Field(ge=1, le=1_000_000_000)
    window_seconds: float = Field(gt=0, le=366 * 86400)
    algorithm: RateLimitAlgorithm = RateLimitAlgorithm.TOKEN_BUCKET
    scope: RateLimitScope = RateLimitScope.PER_USER
    burst_multiplier: float = Field(1.0, ge=1.0, le=1000.0)
    enabled: bool = True

    @property
    def capacity(self) -> int:
        """The most one key can use at once: ``floor(requests * burst_multiplier)`` for the
        token bucket, ``requests`` for the windows."""
        if self.algorithm is RateLimitAlgorithm.TOKEN_BUCKET:
            return math.floor(self.requests * self.burst_multiplier)
        return self.requests


class LimitsConfig(Section):
    """``[limits]``: the store, what happens when it is unreachable, and the rules."""

    store: StoreKind = StoreKind.SQL
    failure_mode: FailureMode = FailureMode.OPEN
    timeout_seconds: float = Field(2.0, gt=0, le=60)
    """Bound on one store operation; past it the operation counts as a store failure."""
    probe_interval_seconds: float = Field(0.5, gt=0, le=300)
    """While the store fails, one decision in this interval tries it; the others get
    the failure-mode answer at once."""
    key_prefix: str = Field("revoctl:rl:", max_length=64)
    """Prefix of every Redis key the limiter writes."""
    rules: tuple[RateLimitRule, ...] = ()

    @property
    def pool_wait_seconds(self) -> float:
        """The longest a decision waits for a free store connection (all of
        ``redis.max_connections``, or of the database pool, busy): half of
        ``timeout_seconds``, so that a wait that runs out (back-pressure: ``failure_mode``
        answers that call) ends before the store would count as not answering (an outage).
        """
        return self.timeout_seconds * POOL_WAIT_SHARE

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: tuple[RateLimitRule, ...]) -> tuple[RateLimitRule, ...]:
        names = [rule.name for rule in rules]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(repeated)}")
        return rules

    def rule(self, name: str) -> RateLimitRule | None:
        """The rule called ``name``, if configured."""
        return next((rule for rule in self.rules if rule.name == name), None)
