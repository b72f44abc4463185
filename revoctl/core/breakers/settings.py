"""`CircuitBreakerConfig` and `BreakersConfig`: each breaker's thresholds, where state is shared.

A breaker's settings are laid in this order, each over the one before: the built-in
defaults, ``[breakers.defaults]``, the predefined breaker's own values
(`PREDEFINED_OVERRIDES`: the database and Redis breakers answer faster and keep their
trips to the process that saw them), then ``[breakers.services.NAME]``.
"""

from __future__ import annotations

import re
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from revoctl.core._settings import Section
from revoctl.core._stores import StoreKind

PREDEFINED_BREAKERS = ("openai_api", "anthropic_api", "deepseek_api", "database", "redis")
"""Present with no configuration (CONTRACT)."""

PREDEFINED_OVERRIDES: dict[str, dict[str, Any]] = {
    # A pod that cannot reach the database or Redis is more often that pod's own fault
    # (its network, its pool) than an outage: its trip stays local. These calls are
    # short, so they are cut and judged slow much sooner than a model's answer.
    "database": {
        "timeout": 10.0,
        "slow_call_seconds": 2.0,
        "recovery_timeout": 10,
        "share_trips": False,
    },
    "redis": {
        "timeout": 2.0,
        "slow_call_seconds": 0.5,
        "recovery_timeout": 5,
        "share_trips": False,
    },
}
"""The predefined breakers' own values, between ``[breakers.defaults]`` and their
``[breakers.services.NAME]`` table; the model providers' breakers take the defaults."""

BREAKER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class CircuitBreakerConfig(Section):
    """One breaker's thresholds: ``[breakers.defaults]`` laid under ``[breakers.services.NAME]``.

    It opens on ``failure_threshold`` consecutive failures, or when at least
    ``failure_rate_threshold`` percent of the last ``window_size`` calls failed (once
    ``minimum_calls`` calls were made). After ``recovery_timeout`` seconds it lets
    ``success_threshold`` trial calls through (fleet-wide when ``share_trips``): that
    many successes close it, one failure opens it again.
    """

    name: str = ""
    failure_threshold: int = Field(5, ge=1, le=10_000)
    failure_rate_threshold: float = Field(50.0, ge=0, le=100)
    """Percent of failed calls in the window that opens the breaker; 0 turns the rule off."""
    window_size: int = Field(20, ge=1, le=100_000)
    minimum_calls: int = Field(10, ge=1, le=100_000)
    recovery_timeout: float = Field(30, ge=0, le=86400)
    success_threshold: int = Field(2, ge=1, le=10_000)
    timeout: float = Field(30.0, ge=0, le=3600)
    """Seconds an awaited call may take before it is cancelled and counted a failure; 0 = none."""
    slow_call_seconds: float = Field(10.0, ge=0, le=3600)
    """A call taking this long is counted slow; 0 = never."""
    slow_call_is_failure: bool = False
    share_trips: bool = True
    """An automatic trip opens the breaker in every process on the store (an operator's
    trip and reset always reach every process)."""

    @model_validator(mode="after")
    def _minimum_within_window(self) -> Self:
        if self.minimum_calls > self.window_size:
            raise ValueError(
                f"minimum_calls ({self.minimum_calls}) must not exceed window_size "
                f"({self.window_size})"
            )
        return self


class BreakersConfig(Section):
    """``[breakers]``: the store, the defaults, per-breaker overrides, and how often each
    process reads the shared state and reports its statistics."""

    store: StoreKind = StoreKind.SQL
    defaults: CircuitBreakerConfig = CircuitBreakerConfig()
    services: dict[str, CircuitBreakerConfig] = {}
    poll_interval: float = Field(0.5, gt=0, le=60)
    """Seconds between reads of the shared state (on Redis a backstop: changes are pushed)."""
    report_interval: float = Field(2.0, gt=0, le=600)
    """Seconds between a process's reports of its statistics; three missed is stale."""
    process_ttl: float = Field(300, gt=0, le=86400)
    """Seconds a process's last report is kept after it stops reporting."""
    history_limit: int = Field(1000, ge=10, le=1_000_000)
    """Transitions kept per breaker in the store, newest first."""
    key_prefix: str = Field("revoctl:cb:", max_length=64)
    """Prefix of the Redis keys and channel (store ``redis``)."""
    guard_own_calls: bool = True
    """The predefined ``database`` and ``redis`` breakers judge revoctl's own pooled
    database calls and the rate limiter's Redis calls (in the runtime; not the CLI's)."""

    @field_validator("services")
    @classmethod
    def _valid_names(cls, services: dict[str, CircuitBreakerConfig]) -> dict[str, Any]:
        bad = sorted(name for name in services if not re.match(BREAKER_NAME_PATTERN, name))
        if bad:
            raise ValueError(
                f"invalid breaker name(s) {', '.join(map(repr, bad))}: use letters, digits, "
                "'_', '.', '-' (at most 128)"
            )
        return services

    @model_validator(mode="before")
    @classmethod
    def _lay_services_over_defaults(cls, data: Any) -> Any:
        """Each ``services.NAME`` table is the defaults, then the predefined breaker's own
        values, with its own keys on top."""
        if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
            return data
        defaults = data.get("defaults", {})
        if isinstance(defaults, CircuitBreakerConfig):
            defaults = defaults.model_dump(exclude={"name"})
        elif not isinstance(defaults, dict):
            return data
        services = {
            name: {**defaults, **PREDEFINED_OVERRIDES.get(name, {}), **override, "name": name}
            if isinstance(override, dict)
            else override
            for name, override in data["services"].items()
        }
        return {**data, "services": services}

    def names(self) -> list[str]:
        """Every breaker: the predefined ones, then those configured, each once."""
        return list(dict.fromkeys([*PREDEFINED_BREAKERS, *self.services]))

    def config_for(self, name: str) -> CircuitBreakerConfig:
        """The thresholds of breaker ``name``: its overrides, else the defaults (with a
        predefined breaker's own values)."""
        found = self.services.get(name)
        if found is not None:
            return found
        return self.defaults.model_copy(update={**PREDEFINED_OVERRIDES.get(name, {}), "name": name})
