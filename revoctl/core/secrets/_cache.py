"""The secret manager's cache: each (name, version) read is kept for its TTL, then, while
the provider fails, served stale for at most ``max_stale_seconds`` past it.

Every value cached is registered with the log redaction filter first. The cache lives
in the process's memory only; values are never written to disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from revoctl.core.redaction import register_secret
from revoctl.core.secrets.base import Secret

Key = tuple[str, str | None]
"""A secret's name and version (None: the latest)."""


@dataclass
class _Entry:
    secret: Secret
    expires_at: float
    """End of the TTL; the stale bound counts from here."""
    serve_until: float
    """Until when reads are answered from the entry: the TTL, or a retry pause while stale."""


class SecretCache:
    """Secrets by (name, version), timed by ``clock`` (monotonic seconds), with the lookups
    answered (``hits``) and not (``misses``)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._entries: dict[Key, _Entry] = {}
        self.hits = self.misses = 0

    def fresh(self, key: Key) -> Secret | None:
        """The cached secret while it is served: the hot path, kept free of awaits."""
        entry = self._entries.get(key)
        if entry is not None and self._clock() < entry.serve_until:
            self.hits += 1
            return entry.secret
        return None

    def remember(self, key: Key, secret: Secret, ttl: float) -> None:
        """Keep ``secret`` for ``ttl`` seconds."""
        register_secret(secret.value)
        expires_at = self._clock() + ttl
        self._entries[key] = _Entry(secret, expires_at, expires_at)

    def stale(self, key: Key, max_stale: float, retry_seconds: float) -> Secret | None:
        """The expired secret, when it is at most ``max_stale`` seconds past its TTL; it is
        then served for ``retry_seconds`` (within that bound) before the provider is asked
        again."""
        entry, now = self._entries.get(key), self._clock()
        if entry is None or now - entry.expires_at > max_stale:
            return None
        entry.serve_until = min(now + retry_seconds, entry.expires_at + max_stale)
        return entry.secret

    def invalidate(self, name: str) -> None:
        """Forget every cached version of ``name``."""
        for key in [key for key in self._entries if key[0] == name]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()

    def servable(self, max_stale: float) -> int:
        """How many entries could still be served while the provider fails."""
        now = self._clock()
        return sum(now - entry.expires_at <= max_stale for entry in self._entries.values())

    def figures(self) -> dict[str, Any]:
        """``{"size", "expired", "hits", "misses", "hit_rate"}`` for health."""
        now = self._clock()
        lookups = self.hits + self.misses
        return {
            "size": len(self._entries),
            "expired": sum(now >= entry.expires_at for entry in self._entries.values()),
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / lookups, 4) if lookups else None,
        }
