"""`CircuitBreakerConfig` and `BreakersConfig`: each breaker's thresholds, where state is shared."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from revoctl.core._settings import Section

PREDEFINED_BREAKERS = ("openai_api", "anthropic_api", "deepseek_api", "database", "redis")
"""Present with no configuration (CONTRACT)."""


class BreakerStoreKind(StrEnum):
    """``[breakers] store``: where shared state and operator overrides live."""

    MEMORY = "memory"
    SQL = "sql"
    REDIS = "redis"


class CircuitBreakerConfig(Section):
    """One breaker's thresholds: ``[breakers.defaults]`` laid under ``[breakers.services.NAME]``."""

    name: str = ""
    failure_threshold: int = Field(5, ge=1, le=10_000)
    recovery_timeout: float = Field(30, ge=0, le=86400)
    success_threshold: int = Field(2, ge=1, le=10_000)
    timeout: float = Field(30.0, ge=0, le=3600)
    slow_call_seconds: float = Field(10.0, ge=0, le=3600)


class BreakersConfig(Section):
    """``[breakers]``: the store, the defaults, and per-breaker overrides."""

    store: BreakerStoreKind = BreakerStoreKind.SQL
    defaults: CircuitBreakerConfig = CircuitBreakerConfig()
    services: dict[str, CircuitBreakerConfig] = {}

    @model_validator(mode="before")
    @classmethod
    def _lay_services_over_defaults(cls, data: Any) -> Any:
        """Each ``services.NAME`` table is the defaults with its own keys on top."""
        if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
            return data
        defaults = data.get("defaults", {})
        if isinstance(defaults, CircuitBreakerConfig):
            defaults = defaults.model_dump(exclude={"name"})
        elif not isinstance(defaults, dict):
            return data
        services = {
            name: {**defaults, **override, "name": name} if isinstance(override, dict) else override
            for name, override in data["services"].items()
        }
        return {**data, "services": services}

    def config_for(self, name: str) -> CircuitBreakerConfig:
        """The thresholds of breaker ``name``: its overrides, else the defaults."""
        found = self.services.get(name)
        return found or self.defaults.model_copy(update={"name": name})
