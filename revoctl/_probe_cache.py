"""The settings ``db ping`` needs, remembered once validated, read back without pydantic.

Importing pydantic and building the settings models costs a probe more than the
probe itself (about 110 ms against a 100 ms ``asyncpg.connect`` + ``SELECT 1``).
A configuration is a pure function of its inputs, so once a run has validated one,
the values a probe reads (``[database]`` without its URL, ``[logging]``) are kept
under a key made of every input: the configuration's sources (file, profile, env,
flags, read by `revoctl._layers` as `load_config` reads them), the built-in default
database URL, and the code that validates them (every revoctl module's and
pydantic's size and modification time). A changed file, variable, flag, profile or
package is a new key, so a stale entry is never read; an invalid configuration is
never remembered, so its error always comes from the real validation.

The URL is not kept (it may hold a password): it is the one read from the sources
with its scheme normalised, which is what ``DatabaseConfig`` makes of it, and
`remember` keeps nothing when the two disagree. The file lives in
``$XDG_CACHE_HOME/revoctl`` (owner only); failing to read or write it only costs time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from revoctl._layers import Layers, Sources
from revoctl.core._paths import default_database_url
from revoctl.core.db._url import normalise_scheme

if TYPE_CHECKING:
    from revoctl.config import Settings

CACHE_FILE = "probe-settings.json"
KEPT_ENTRIES = 16
"""Entries kept, newest last: one per configuration a machine's probes use."""

_PACKAGE = Path(__file__).resolve().parent
"""The revoctl package: its modules are part of every key."""


@dataclass(frozen=True)
class ProbeSettings:
    """What ``db ping`` reads of the validated configuration."""

    url: str
    database: Mapping[str, Any]
    """``[database]`` as validated, without ``url``."""
    logging: Mapping[str, Any]


def recall(sources: Sources, env: Mapping[str, str]) -> ProbeSettings | None:
    """The probe's settings for ``sources`` if a run has validated exactly these, else None."""
    entry = _read(env).get(_key(sources, env))
    entry = entry if isinstance(entry, dict) else {}
    database, logging = entry.get("database"), entry.get("logging")
    if not (isinstance(database, dict) and isinstance(logging, dict)):
        return None  # never written, or not by `remember`
    return ProbeSettings(_url(sources, env), database, logging)


def remember(sources: Sources, env: Mapping[str, str], settings: Settings) -> None:
    """Keep what a probe reads of ``settings``, validated from ``sources``."""
    if settings.database.url != _url(sources, env):
        return
    key = _key(sources, env)
    entries = _read(env)
    if key in entries:
        return
    entries[key] = {
        "database": settings.database.model_dump(mode="json", exclude={"url"}),
        "logging": settings.logging.model_dump(mode="json"),
    }
    _write(env, dict(list(entries.items())[-KEPT_ENTRIES:]))


def cache_path(env: Mapping[str, str]) -> Path:
    cache_home = env.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(cache_home) / "revoctl" / CACHE_FILE


def _url(sources: Sources, env: Mapping[str, str]) -> str:
    layers = Layers()
    for flat, label in sources.layers:
        layers.add(flat, label)
    url = layers.values.get("database.url", default_database_url(env))
    return normalise_scheme(url) if isinstance(url, str) else ""


def _key(sources: Sources, env: Mapping[str, str]) -> str:
    inputs = [
        _code_fingerprint(),
        default_database_url(env),
        str(sources.config_file),
        sources.profile,
        [(dict(flat), label) for flat, label in sources.layers],
    ]
    text = json.dumps(
        inputs, sort_keys=True, default=lambda value: [type(value).__name__, str(value)]
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _code_fingerprint() -> list[Any]:
    """Size and modification time of every module that could change what validates."""
    stamps: list[Any] = []
    for root, dirs, files in os.walk(_PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                stat = os.stat(os.path.join(root, name))
                stamps.append([root, name, stat.st_size, stat.st_mtime_ns])
    for package in ("pydantic", "pydantic_core"):  # found, not imported
        spec = importlib.util.find_spec(package)
        origin = spec.origin if spec else None
        for path in (origin, os.path.dirname(origin)) if origin else ():
            stat = os.stat(path)
            stamps.append([path, stat.st_size, stat.st_mtime_ns])
    return stamps


def _read(env: Mapping[str, str]) -> dict[str, Any]:
    try:
        entries = json.loads(cache_path(env).read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _write(env: Mapping[str, str], entries: dict[str, Any]) -> None:
    path = cache_path(env)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(OSError):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(entries, fh)
        os.replace(temporary, path)
    with contextlib.suppress(OSError):
        temporary.unlink(missing_ok=True)
