"""The parallel slots this process holds, and the one background task that renews them.

A slot is a lease in the store that runs out ``lease_seconds`` after it was taken or last
renewed. The limiter records each slot a reservation took (`LeaseKeeper.add`) and forgets
it when its settlement frees it (`LeaseKeeper.remove`); while any is held, one task
renews all of them in one store call every ``renew_seconds``, so a process that dies
stops renewing and its slots are free again within ``lease_seconds``.

A lease held past ``max_age`` (longer than any request) is no longer renewed: a slot
whose settlement never came (a bug, a cancelled task) frees itself like a dead
process's, instead of holding the account's cap for ever.

Lease ids are ``HOLDER-N``: the holder is a random token of this process (renewed in a
forked child), N a counter, so ids are unique across processes and hosts and a store
can find every lease of one holder (`lease_holder`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from revoctl.core._periodic import every

if TYPE_CHECKING:
    from revoctl.core.limits.base import LimitStore
    from revoctl.core.limits.reservations import HeldLease

logger = logging.getLogger("revoctl.limits")

MAX_LEASE_AGE = 3600.0
"""Seconds after which a held lease is no longer renewed (no request lasts this long)."""


class _Holder:
    """This process's random token and lease counter; a forked child draws its own."""

    token = secrets.token_hex(8)
    counter = itertools.count(1)

    @classmethod
    def renew(cls) -> None:
        cls.token = secrets.token_hex(8)
        cls.counter = itertools.count(1)


os.register_at_fork(after_in_child=_Holder.renew)


def new_lease_id() -> str:
    """A lease id no other lease of any process on any host has."""
    return f"{_Holder.token}-{next(_Holder.counter)}"


def lease_holder(lease: str) -> str:
    """The holder part of a lease id from `new_lease_id`."""
    return lease.rpartition("-")[0]


class LeaseKeeper:
    """The leases held on ``store``, renewed to ``lease_seconds`` every ``renew_seconds``
    while any is held; ``clock`` (monotonic seconds) dates them for ``max_age``."""

    def __init__(
        self,
        store: Callable[[], LimitStore],
        *,
        lease_seconds: float,
        renew_seconds: float,
        max_age: float = MAX_LEASE_AGE,
        timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.max_age = max_age
        self._timeout = timeout
        self._clock = clock
        self._held: dict[str, tuple[HeldLease, float]] = {}
        self._task: asyncio.Task[None] | None = None
        self.renewals = 0
        """Store calls made to renew leases."""

    def __len__(self) -> int:
        return len(self._held)

    def add(self, held: HeldLease) -> None:
        """Hold ``held`` from now; the renewal task starts with the first lease."""
        self._held[held.lease] = (held, self._clock())
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                every(self.renew_seconds, self.renew, what="renewing parallel slots", now=False)
            )

    def remove(self, lease: str) -> None:
        self._held.pop(lease, None)

    def due(self) -> list[HeldLease]:
        """The leases to renew now; those past ``max_age`` are let go (and logged)."""
        oldest = self._clock() - self.max_age
        stale = [lease for lease, (_, taken) in self._held.items() if taken <= oldest]
        for lease in stale:
            del self._held[lease]
        if stale:
            logger.warning(
                "%d parallel slot(s) held over %gs without a settlement are no longer "
                "renewed; the store frees them within %gs",
                len(stale),
                self.max_age,
                self.lease_seconds,
            )
        return [held for held, _ in self._held.values()]

    async def renew(self) -> None:
        """Renew every lease due, in one store call (none when nothing is held)."""
        held = self.due()
        if not held:
            return
        self.renewals += 1
        async with asyncio.timeout(self._timeout):
            await self._store().renew(held, self.lease_seconds)

    async def stop(self) -> None:
        """End the renewal task; the leases still held run out in the store."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
