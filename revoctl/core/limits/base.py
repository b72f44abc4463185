"""What a limit store is: one atomic decision per call, on one key of one rule.

A store holds the per-key state of every rule and applies one operation to it
atomically: ``check`` (consume when allowed), ``peek`` (consume nothing) or
``refund`` (give units back). The algorithm's numbers come back from that same
decision, so no caller needs a second round trip for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from revoctl.core.limits._result import Op, RateLimitResult
from revoctl.core.limits.settings import RateLimitRule

if TYPE_CHECKING:
    from collections.abc import Sequence

    from revoctl.core.limits.reservations import HeldLease, Reservation, Reserved, Settlement

__all__ = ["LimitStore", "Op", "RateLimitResult"]


class LimitStore(Protocol):
    """Where counters live: process memory, Redis (one script call), or the database."""

    kind: str
    """``"memory"``, ``"redis"`` or ``"sql"``."""
    remote: bool
    """Whether operations cross the network (and so are bounded by a timeout)."""

    def describe(self) -> str:
        """Where the counters are, fit for messages (no password)."""
        ...

    async def apply(self, rule: RateLimitRule, key: str, op: Op, weight: int) -> RateLimitResult:
        """Apply ``op`` of ``weight`` units to ``key``'s state under ``rule``, atomically.

        :raises BackendUnavailableError: the store cannot be reached.
        """
        ...

    async def reserve(self, reservation: Reservation, lease_seconds: float) -> Reserved:
        """Apply every charge of ``reservation`` (one hash tag) atomically, all or nothing,
        in one round trip: its rules' checks, its budget, its slot (a lease running out
        ``lease_seconds`` from now, server time).

        :raises BackendUnavailableError: the store cannot be reached.
        """
        ...

    async def settle(self, settlement: Settlement) -> list[RateLimitResult]:
        """Apply ``settlement`` (one hash tag) in one round trip; the refunded rules' states
        after it, in its order."""
        ...

    async def renew(self, held: Sequence[HeldLease], lease_seconds: float) -> None:
        """Extend every lease in ``held`` to ``lease_seconds`` from now (server time); one
        background call for all of them (pipelined per node on a cluster)."""
        ...

    async def spent(self, account: str, period: int) -> int:
        """``account``'s budget counter for ``period``, nano-units (0 when never charged);
        reservations of requests in flight included."""
        ...

    async def keys(self, rule: RateLimitRule) -> list[str]:
        """Every key with live state under ``rule``."""
        ...

    async def reset(self, rule: RateLimitRule, key: str | None) -> int:
        """Forget ``key``'s state (every key's when None); the number of keys removed."""
        ...

    async def ping(self) -> None:
        """Reach the store once (for health and recovery probes).

        :raises RevoctlError: the store cannot be used.
        """
        ...

    async def close(self) -> None:
        """Release connections; the store is not used again."""
        ...
