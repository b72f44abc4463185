"""A limit decision's result and operations, apart from the store protocol (`base`), so
that the reservation types (`reservations`) can name them without an import cycle."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

Op = Literal["check", "peek", "refund"]
"""``check`` consumes when allowed, ``peek`` never writes, ``refund`` gives units back."""


class RateLimitResult(NamedTuple):
    """One decision: the CONTRACT's ``allowed``, ``remaining``, ``limit``, ``retry_after``
    (seconds until a check of the same weight would be allowed; None when allowed) and
    ``reset_after`` (seconds until the key is back to full); ``reason`` says why a check
    was denied without counting (a weight above the limit) or answered without the store.

    A named tuple: immutable, and the cheapest object to build on the decision path.
    """

    allowed: bool
    remaining: int
    limit: int
    retry_after: float | None
    reset_after: float
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The CONTRACT's JSON record (``reason`` only when there is one)."""
        document: dict[str, Any] = {
            "allowed": self.allowed,
            "remaining": self.remaining,
            "limit": self.limit,
            "retry_after": self.retry_after,
            "reset_after": self.reset_after,
        }
        if self.reason is not None:
            document["reason"] = self.reason
        return document
