"""Configuration: one frozen `Settings`, resolved from layers with the source of each value.

Precedence, lowest to highest: built-in defaults, the config file, the selected
profile, ``REVOCTL_<TABLE>__<KEY>`` environment variables, command-line flags.
Every leaf value remembers which layer set it, so ``revoctl config show`` can
say where a value came from, and a validation error can name the file or the
variable at fault.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from revoctl._dotted import flatten
from revoctl._layers import Layers, Sources, read_sources
from revoctl.core._paths import ENV_HOME, default_database_url, state_dir
from revoctl.core._settings import Section
from revoctl.core.breakers.settings import BreakersConfig
from revoctl.core.db.settings import DatabaseConfig, RetentionConfig
from revoctl.core.errors import ConfigError, UsageError
from revoctl.core.gateway.settings import (
    GatewayConfig,
    ModelConfig,
    ProviderConfig,
    TierConfig,
    rule_names,
)
from revoctl.core.health import HealthConfig
from revoctl.core.limits.settings import LimitsConfig
from revoctl.core.logs import LoggingConfig
from revoctl.core.redaction import MASK, SECRET_KEY, redact_url
from revoctl.core.redis import RedisConfig
from revoctl.core.references import PATTERN, PREFIX, referenced_names, references_secrets
from revoctl.core.secrets.base import validate_name
from revoctl.core.secrets.settings import SecretConfig
from revoctl.core.tracing.settings import TracingConfig

__all__ = ["ENV_HOME", "LoadedConfig", "Settings", "describe_config", "load_config"]


class Settings(Section):
    """The whole effective configuration: each service's own settings, composed."""

    secrets: SecretConfig = SecretConfig()
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    redis: RedisConfig = RedisConfig()
    health: HealthConfig = HealthConfig()
    limits: LimitsConfig = LimitsConfig()
    breakers: BreakersConfig = BreakersConfig()
    logging: LoggingConfig = LoggingConfig()
    gateway: GatewayConfig = GatewayConfig()
    providers: dict[str, ProviderConfig] = {}
    models: dict[str, ModelConfig] = {}
    tiers: dict[str, TierConfig] = {}
    tracing: TracingConfig = TracingConfig()
    retention: RetentionConfig = RetentionConfig()

    @model_validator(mode="after")
    def _references_between_tables(self) -> Settings:
        """Names that point at other tables point at something: a typo fails at load."""
        problems = []
        rules = {rule.name for rule in self.limits.rules}
        for key in ("request_rule", "token_rule"):
            problems += [
                f"gateway.{key}: no [[limits.rules]] named {rule!r}"
                for rule in rule_names(getattr(self.gateway, key))
                if rule not in rules
            ]
        for name, tier in self.tiers.items():
            for key in ("request_rule", "token_rule"):
                problems += [
                    f"tiers.{name}.{key}: no [[limits.rules]] named {rule!r}"
                    for rule in rule_names(getattr(tier, key))
                    if rule not in rules
                ]
            problems += [
                f"tiers.{name}.models: no [models.{model}]"
                for model in tier.models
                if model not in self.models
            ]
        for name, model in self.models.items():
            for key in ("request_rule", "token_rule"):
                rule = getattr(model, key)
                if rule and rule not in rules:
                    problems.append(f"models.{name}.{key}: no [[limits.rules]] named {rule!r}")
            where = "deployments" if model.deployments else "provider"
            problems += [
                f"models.{name}.{where}: no [providers.{provider}]"
                for provider in model.providers()
                if provider not in self.providers
            ]
            problems += [
                f"models.{name}.deployments: no breaker {d.breaker!r} (predefined or "
                f"[breakers.services.{d.breaker}])"
                for d in model.deployments
                if d.breaker and d.breaker not in self.breakers.names()
            ]
            problems += [
                f"models.{name}.fallbacks: no [models.{fallback}]"
                for fallback in model.fallbacks
                if fallback not in self.models
            ]
        if problems:
            raise ValueError("; ".join(problems))
        return self


@dataclass(frozen=True)
class LoadedConfig:
    """`Settings` plus where they came from."""

    settings: Settings
    home: Path
    config_file: Path | None
    profile: str | None
    sources: dict[str, str] = field(default_factory=dict)
    """Dotted key -> source label, e.g. ``"env REVOCTL_DATABASE__URL"``."""


def load_config(
    config_file: str | Path | None = None,
    profile: str | None = None,
    *,
    overrides: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> LoadedConfig:
    """Resolve the configuration the way the CLI and `load_services()` do.

    :raises ConfigError: the file is missing or malformed, the profile is unknown,
        or a value or key is invalid; the message names the source and the key.
    """
    env = os.environ if env is None else env
    return validate_sources(
        read_sources(config_file, profile, overrides, env, cwd or Path.cwd()), env
    )


def validate_sources(sources: Sources, env: Mapping[str, str]) -> LoadedConfig:
    """`Settings` from the built-in defaults with ``sources`` laid over them.

    :raises ConfigError: a value or key is invalid; the message names the source and the key.
    """
    layers = Layers()
    layers.add(flatten(_defaults(env)), "default")
    for flat, label in sources.layers:
        layers.add(flat, label)
    _check_references(layers)
    try:
        settings = Settings.model_validate(layers.merged())
    except ValidationError as exc:
        raise ConfigError(_describe(exc, layers.sources)) from None
    return LoadedConfig(
        settings, state_dir(env), sources.config_file, sources.profile, layers.sources
    )


def _check_references(layers: Layers) -> None:
    """Every ``${secret:NAME}`` in every value is closed and names a valid secret name, so a
    typo fails at load (``config show``), not when the setting is first used.

    :raises ConfigError: naming the source, the key and the reference.
    """
    problems = [
        f"{layers.sources[key]}: {key}: {problem}"
        for key, value in layers.values.items()
        for text in _strings(value)
        if (problem := _reference_problem(text))
    ]
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))


def _strings(value: Any) -> list[str]:
    """Every string in a leaf value (a list of tables holds strings too)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _strings(item)]
    return []


def _reference_problem(text: str) -> str | None:
    if not references_secrets(text):
        return None
    if text.count(PREFIX) != len(PATTERN.findall(text)):
        return f"a {PREFIX}NAME}} reference is not closed with '}}'"
    for name in referenced_names(text):
        try:
            validate_name(name)
        except UsageError as exc:
            return f"{exc} (in {PREFIX}{name}}})"
    return None


def _defaults(env: Mapping[str, str]) -> dict[str, Any]:
    data = Settings().model_dump(mode="json")
    data["database"]["url"] = default_database_url(env)
    return data


def _describe(exc: ValidationError, sources: Mapping[str, str]) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        source = _source_of(key, sources)
        if error["type"] == "extra_forbidden":
            message = "unknown key" + _suggestion(key)
        else:
            message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{source}: {key}: {message}" if key else message)
    return "invalid configuration: " + "; ".join(problems)


def _source_of(key: str, sources: Mapping[str, str]) -> str:
    """Where ``key`` was set; for a table, the layer that set something in it, not a default."""
    while key:
        if key in sources:
            return sources[key]
        matches = [src for k, src in sources.items() if k.startswith(f"{key}.")]
        if matches:
            return next((src for src in reversed(matches) if src != "default"), matches[-1])
        key = key.rpartition(".")[0]
    return "configuration"


def _suggestion(key: str) -> str:
    *tables, leaf = key.split(".")
    model: Any = Settings
    for table in tables:
        field_info = model.model_fields.get(table) if hasattr(model, "model_fields") else None
        annotation = getattr(field_info, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    import difflib

    close = difflib.get_close_matches(leaf, list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def describe_config(loaded: LoadedConfig) -> dict[str, Any]:
    """The effective configuration, each value with its source, secret-looking values masked.

    ``source`` is one of default, file, profile, env, flag; ``origin`` says which
    file, profile or variable.
    """
    flat = flatten(loaded.settings.model_dump(mode="json"))
    entries = []
    for key, value in flat.items():
        origin = _source_of(key, loaded.sources)
        leaf = key.rpartition(".")[2]
        if isinstance(value, str) and value:
            value = (
                MASK
                if SECRET_KEY.search(leaf) and not references_secrets(value)
                else redact_url(value)
            )
        entries.append(
            {"key": key, "value": value, "source": origin.split(" ", 1)[0], "origin": origin}
        )
    return {
        "config_file": str(loaded.config_file) if loaded.config_file else None,
        "profile": loaded.profile,
        "home": str(loaded.home),
        "settings": entries,
    }
