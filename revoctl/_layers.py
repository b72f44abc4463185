"""The configuration's sources, read and laid over each other, before any model sees them.

The config file (found the way the CLI documents), the selected profile,
``REVOCTL_<TABLE>__<KEY>`` variables and ``--set`` flags become dotted leaves, each
remembering the layer that set it. Nothing here imports pydantic: `revoctl.config`
lays the built-in defaults under these layers and validates the result, and the
probe commands' cache (`revoctl._probe_cache`) keys on them without building a
model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from revoctl._dotted import flatten
from revoctl.core.errors import ConfigError

ENV_PREFIX = "REVOCTL_"
ENV_CONFIG = "REVOCTL_CONFIG"
ENV_PROFILE = "REVOCTL_PROFILE"
ENV_OUTPUT = "REVOCTL_OUTPUT"
LOCAL_CONFIG_NAME = "revoctl.toml"

Flat = Mapping[str, Any]
"""Dotted key -> value, or -> ``(value, source label)`` for a leaf with its own label."""


@dataclass(frozen=True)
class Sources:
    """Every layer above the built-in defaults, lowest first, and what chose them."""

    config_file: Path | None
    profile: str | None
    layers: tuple[tuple[Flat, str], ...]
    """``(dotted leaves, source label)`` for the file, the profile, env and flags."""


def read_sources(
    config_file: str | Path | None,
    profile: str | None,
    overrides: Mapping[str, str] | None,
    env: Mapping[str, str],
    cwd: Path,
) -> Sources:
    """Find and read the file, pick the profile, collect the variables and flags.

    :raises ConfigError: the file is missing or malformed, or the profile is unknown.
    """
    path = _find_config_file(config_file, env, cwd)
    profile = profile or env.get(ENV_PROFILE) or None
    document = _read_toml(path) if path else {}
    profiles = document.pop("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: profiles: must be a table of [profiles.NAME] tables")
    layers: list[tuple[Flat, str]] = [(flatten(document), f"file {path}")]
    if profile:
        if profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none defined"
            where = path or "no config file"
            raise ConfigError(f"unknown profile {profile!r} ({where}; profiles: {known})")
        if not isinstance(profiles[profile], dict):
            raise ConfigError(f"{path}: profiles.{profile}: must be a table of settings")
        layers.append((flatten(profiles[profile]), f"profile {profile} in {path}"))
    layers.append((_env_values(env), "env"))
    layers.append((dict(overrides or {}), "flag --set"))
    return Sources(path, profile, tuple(layers))


class Layers:
    """Dotted leaves laid over each other, remembering which layer set each one."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}

    def add(self, flat: Flat, label: str) -> None:
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


def _env_values(env: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """``REVOCTL_A__B=v`` -> ``{"a.b": (v, "env REVOCTL_A__B")}``; other names are skipped."""
    values: dict[str, tuple[Any, str]] = {}
    for name, value in env.items():
        if name.startswith(ENV_PREFIX) and "__" in name:
            key = name[len(ENV_PREFIX) :].lower().replace("__", ".")
            values[key] = (value, f"env {name}")
    return values
