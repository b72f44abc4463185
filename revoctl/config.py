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
from revoctl.core._paths import ENV_HOME, default_database_url, state_dir
from revoctl.core._settings import Section
from revoctl.core.breakers.settings import BreakersConfig
from revoctl.core.db.settings import DatabaseConfig
from revoctl.core.errors import ConfigError
from revoctl.core.gateway.settings import GatewayConfig, ModelConfig, ProviderConfig
from revoctl.core.health import HealthConfig
from revoctl.core.limits.settings import LimitsConfig
from revoctl.core.logs import LoggingConfig
from revoctl.core.redaction import MASK, SECRET_KEY, redact_url
from revoctl.core.redis import RedisConfig
from revoctl.core.references import references_secrets
from revoctl.core.secrets.settings import SecretConfig

ENV_PREFIX = "REVOCTL_"
ENV_CONFIG = "REVOCTL_CONFIG"
ENV_PROFILE = "REVOCTL_PROFILE"
ENV_OUTPUT = "REVOCTL_OUTPUT"
LOCAL_CONFIG_NAME = "revoctl.toml"

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

    @model_validator(mode="after")
    def _references_between_tables(self) -> Settings:
        """Names that point at other tables point at something: a typo fails at load."""
        problems = []
        rules = {rule.name for rule in self.limits.rules}
        for key in ("request_rule", "token_rule"):
            rule = getattr(self.gateway, key)
            if rule and rule not in rules:
                problems.append(f"gateway.{key}: no [[limits.rules]] named {rule!r}")
        for name, model in self.models.items():
            for key in ("request_rule", "token_rule"):
                rule = getattr(model, key)
                if rule and rule not in rules:
                    problems.append(f"models.{name}.{key}: no [[limits.rules]] named {rule!r}")
            if model.provider not in self.providers:
                problems.append(f"models.{name}.provider: no [providers.{model.provider}]")
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
    home = state_dir(env)
    path = _find_config_file(config_file, env, cwd or Path.cwd())
    profile = profile or env.get(ENV_PROFILE) or None

    layers = _Layers()
    layers.add(flatten(_defaults(env)), "default")
    document = _read_toml(path) if path else {}
    profiles = document.pop("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: profiles: must be a table of [profiles.NAME] tables")
    layers.add(flatten(document), f"file {path}")
    if profile:
        if profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none defined"
            where = path or "no config file"
            raise ConfigError(f"unknown profile {profile!r} ({where}; profiles: {known})")
        if not isinstance(profiles[profile], dict):
            raise ConfigError(f"{path}: profiles.{profile}: must be a table of settings")
        layers.add(flatten(profiles[profile]), f"profile {profile} in {path}")
    layers.add(_env_values(env), "env")
    layers.add(dict(overrides or {}), "flag --set")

    try:
        settings = Settings.model_validate(layers.merged())
    except ValidationError as exc:
        raise ConfigError(_describe(exc, layers.sources)) from None
    return LoadedConfig(settings, home, path, profile, layers.sources)


def _find_config_file(
    explicit: str | Path | None, env: Mapping[str, str], cwd: Path
) -> Path | None:
    chosen = explicit or env.get(ENV_CONFIG)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            problem = "is not a file" if path.exists() else "not found"
            raise ConfigError(f"config file {problem}: {path}")
        return path
    local = cwd / LOCAL_CONFIG_NAME
    if local.is_file():
        return local
    config_home = env.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    user = Path(config_home) / "revoctl" / "config.toml"
    return user if user.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # only when there is a file: most CLI runs have none

    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 text") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: tables nested too deeply") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def _defaults(env: Mapping[str, str]) -> dict[str, Any]:
    data = Settings().model_dump(mode="json")
    data["database"]["url"] = default_database_url(env)
    return data


def _env_values(env: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """``REVOCTL_A__B=v`` -> ``{"a.b": (v, "env REVOCTL_A__B")}``; other names are skipped."""
    values: dict[str, tuple[Any, str]] = {}
    for name, value in env.items():
        if name.startswith(ENV_PREFIX) and "__" in name:
            key = name[len(ENV_PREFIX) :].lower().replace("__", ".")
            values[key] = (value, f"env {name}")
    return values


class _Layers:
    """Dotted leaves laid over each other, remembering which layer set each one."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}

    def add(self, flat: Mapping[str, Any], label: str) -> None:
        for key, value in flat.items():
            source = label
            if isinstance(value, tuple):
                value, source = value
            # A table set whole (e.g. `[[limits.rules]]`) replaces what lay below it.
            for shadowed in [k for k in self.values if k.startswith(f"{key}.")]:
                del self.values[shadowed], self.sources[shadowed]
            self.values[key] = value
            self.sources[key] = source

    def merged(self) -> dict[str, Any]:
        nested: dict[str, Any] = {}
        for dotted, value in self.values.items():
            *tables, leaf = dotted.split(".")
            node = nested
            for table in tables:
                child = node.setdefault(table, {})
                if not isinstance(child, dict):
                    child = node[table] = {}
                node = child
            node[leaf] = value
        return nested


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
