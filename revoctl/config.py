"""Configuration: one frozen `Settings`, resolved from layers with the source of each value.

Precedence, lowest to highest: built-in defaults, the config file, the selected
profile, ``REVOCTL_<TABLE>__<KEY>`` environment variables, command-line flags.
Every leaf value remembers which layer set it, so ``revoctl config show`` can
say where a value came from, and a validation error can name the file or the
variable at fault.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from revoctl._dotted import flatten
from revoctl.core.errors import ConfigError
from revoctl.core.redaction import MASK, redact_url
from revoctl.core.references import references_secrets
from revoctl.core.secrets.base import SecretProvider

ENV_PREFIX = "REVOCTL_"
ENV_CONFIG = "REVOCTL_CONFIG"
ENV_PROFILE = "REVOCTL_PROFILE"
ENV_HOME = "REVOCTL_HOME"
ENV_OUTPUT = "REVOCTL_OUTPUT"
LOCAL_CONFIG_NAME = "revoctl.toml"
DATABASE_FILE_NAME = "revoctl.db"

Source = str  # "default" | "file" | "profile" | "env" | "flag"


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """The state directory: ``REVOCTL_HOME``, else ``$XDG_DATA_HOME/revoctl``."""
    env = os.environ if env is None else env
    if env.get(ENV_HOME):
        return Path(env[ENV_HOME]).expanduser()
    data_home = env.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return Path(data_home) / "revoctl"


def default_database_url(env: Mapping[str, str] | None = None) -> str:
    """The embedded database: a SQLite file in the state directory."""
    return f"sqlite+aiosqlite:///{state_dir(env) / DATABASE_FILE_NAME}"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AzureKeyVaultConfig(_Section):
    vault_url: str = ""
    tenant_id: str = ""
    client_id: str = ""
    verify_challenge_resource: bool = True

    @field_validator("vault_url")
    @classmethod
    def _https(cls, url: str) -> str:
        if url and not url.startswith("https://"):
            raise ValueError("must be an https:// URL, e.g. https://NAME.vault.azure.net/")
        return url


_FLAT_AZURE_KEYS = {
    "azure_vault_url": "vault_url",
    "azure_tenant_id": "tenant_id",
    "azure_client_id": "client_id",
}


class SecretConfig(_Section):
    """How secrets are read: the provider, its fallback, the cache and its bounds.

    The design notes' flat ``azure_vault_url``/``azure_tenant_id``/``azure_client_id``
    keyword arguments are accepted and moved into ``azure``.
    """

    provider: SecretProvider = SecretProvider.LOCAL
    fallback: Literal["local", "none"] = "local"
    cache_ttl_seconds: float = Field(3600, ge=0)
    max_stale_seconds: float = Field(86400, ge=0)
    timeout_seconds: float = Field(10, gt=0)
    azure: AzureKeyVaultConfig = AzureKeyVaultConfig()

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_azure_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not _FLAT_AZURE_KEYS.keys() & data.keys():
            return data
        data = dict(data)
        azure = data.get("azure", {})
        azure = dict(azure.model_dump() if isinstance(azure, BaseModel) else azure)
        for flat, key in _FLAT_AZURE_KEYS.items():
            if flat in data:
                azure[key] = data.pop(flat)
        data["azure"] = azure
        return data

    @model_validator(mode="after")
    def _vault_url_when_azure(self) -> SecretConfig:
        if self.provider is SecretProvider.AZURE_KEY_VAULT and not self.azure.vault_url:
            raise ValueError("azure.vault_url is required when provider is azure_key_vault")
        return self


_ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}
"""Scheme -> the async driver revoctl uses for it."""


class DatabaseConfig(_Section):
    """The database URL and its pool; ``url`` may hold ``${secret:NAME}`` references."""

    url: str = Field(default_factory=default_database_url)
    pool_size: int = Field(10, ge=1)
    max_overflow: int = Field(20, ge=0)
    pool_timeout: float = Field(30, gt=0)
    pool_recycle: int = Field(3600, ge=-1)
    pool_pre_ping: bool = True
    retry_attempts: int = Field(3, ge=0)
    slow_query_ms: float = Field(500, ge=0)
    connect_timeout: float = Field(5, gt=0)
    health_timeout: float = Field(2, gt=0)

    @field_validator("url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        """The URL with its async driver: a bare ``postgresql://`` gets ``+asyncpg``."""
        scheme, sep, rest = url.partition("://")
        driver = _ASYNC_DRIVERS.get(scheme.lower(), scheme.lower())
        if not sep or driver not in _ASYNC_DRIVERS.values():
            raise ValueError(
                "must be a postgresql+asyncpg:// or sqlite+aiosqlite:// URL"
                + (f", not {scheme}://" if sep else "")
            )
        return f"{driver}://{rest}"


class RedisConfig(_Section):
    url: str = "redis://127.0.0.1:6379/0"


class LimitRuleSettings(_Section):
    name: str
    requests: int = Field(ge=1)
    window_seconds: float = Field(gt=0)
    algorithm: Literal["token_bucket", "sliding_window", "fixed_window"] = "token_bucket"
    scope: Literal["per_user", "per_ip", "per_api_key", "global"] = "per_user"
    burst_multiplier: float = Field(1.0, ge=1.0)


class LimitsConfig(_Section):
    store: Literal["memory", "sql", "redis"] = "sql"
    failure_mode: Literal["open", "closed"] = "open"
    rules: tuple[LimitRuleSettings, ...] = ()


class BreakerSettings(_Section):
    failure_threshold: int = Field(5, ge=1)
    recovery_timeout: float = Field(30, ge=0)
    success_threshold: int = Field(2, ge=1)
    timeout: float = Field(30.0, ge=0)
    slow_call_seconds: float = Field(10.0, ge=0)


class BreakerOverrides(_Section):
    failure_threshold: int | None = Field(None, ge=1)
    recovery_timeout: float | None = Field(None, ge=0)
    success_threshold: int | None = Field(None, ge=1)
    timeout: float | None = Field(None, ge=0)
    slow_call_seconds: float | None = Field(None, ge=0)


class BreakersConfig(_Section):
    store: Literal["memory", "sql", "redis"] = "sql"
    defaults: BreakerSettings = BreakerSettings()
    services: dict[str, BreakerOverrides] = {}


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "warning"
    format: Literal["auto", "json", "text"] = "auto"


class Settings(_Section):
    """The whole effective configuration; passed first to every core entry point."""

    secrets: SecretConfig = SecretConfig()
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    redis: RedisConfig = RedisConfig()
    limits: LimitsConfig = LimitsConfig()
    breakers: BreakersConfig = BreakersConfig()
    logging: LoggingConfig = LoggingConfig()


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
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 text") from None
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
            message = error["msg"]
        problems.append(f"{source}: {key}: {message}")
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
    close = difflib.get_close_matches(leaf, list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_SECRET_KEY = re.compile(
    r"(?i)(password|passwd|secret|token|api_key|apikey|credential|private_key)$"
)


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
                if _SECRET_KEY.search(leaf) and not references_secrets(value)
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
