"""The gateway's view of its keys: in memory, refreshed in the background, checked in
constant time.

Each gateway instance keeps every key's id, hash, expiry and revocation in memory
(read through ``svc.keys``, the core `KeyStore`) and re-reads them every
``gateway.keys_refresh_seconds`` (0.5 s), so a request costs no database round trip
and a revocation reaches every instance within that interval. A key id the instance
has not seen yet triggers one refresh at once, so a key works on every instance as
soon as it is created.

A rotated key (``keys rotate NAME --overlap S``) keeps its old value working until
``previous_expires_at``: the ring knows each record by its id and by its previous id, and
the old value names the same record (the same name, tier and budget).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from revoctl.core._periodic import every
from revoctl.core.errors import first_line
from revoctl.core.keys import KEY_PATTERN, hash_key

if TYPE_CHECKING:
    from revoctl.core.keys import KeyRecord, KeyStore

logger = logging.getLogger("revoctl.keys")

UNKNOWN_REFRESH_SECONDS = 0.1
"""An unseen key id refreshes the keys at once, but not more often than this."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class KeyRing:
    """The runtime's view of the keys: in memory, refreshed in the background.

    ``clock`` times the refreshes; ``now`` is the wall clock a key's expiry is read
    against.
    """

    def __init__(
        self,
        store: KeyStore,
        *,
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._store = store
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._now = now
        self._by_id: dict[str, KeyRecord] = {}
        self._by_previous_id: dict[str, KeyRecord] = {}
        self._refreshing: asyncio.Lock | None = None
        self._last_refresh = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    @property
    def loaded(self) -> bool:
        """Whether the keys were read at least once (a later failure keeps that view)."""
        return self._last_refresh != float("-inf")

    async def start(self) -> None:
        """Load the keys, then keep them fresh until `stop()`."""
        await self.refresh()
        self._task = asyncio.create_task(
            every(self._refresh_seconds, self.refresh, what="gateway keys refresh", now=False),
            name="revoctl-keys",
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def refresh(self) -> None:
        """Re-read every key. A failure keeps the last view (a database outage must not
        lock every caller out) and is reported by health."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            try:
                records = await self._store.list_keys()
            except Exception as exc:  # the last view stands; say why in health
                if self.last_error is None:  # once per outage, not at every refresh
                    logger.warning(
                        "gateway keys not refreshed (%s: %s); the keys read last are served",
                        type(exc).__name__, first_line(exc),
                    )  # fmt: skip
                self.last_error = f"{type(exc).__name__}: {exc}"
                return
            if self.last_error is not None:
                logger.warning("gateway keys refreshed again")
            self._by_id = {record.key_id: record for record in records}
            self._by_previous_id = {
                record.previous_key_id: record
                for record in records
                if record.previous_key_id is not None
            }
            self._last_refresh = self._clock()
            self.last_error = None

    async def verify(self, presented: str) -> str | None:
        """The name of the key ``presented`` when it is valid, unexpired and unrevoked."""
        record = await self.find(presented)
        return record.name if record is not None else None

    async def find(self, presented: str) -> KeyRecord | None:
        """The record of the key ``presented`` when it is valid, unexpired and unrevoked:
        its current value, or its value before a rotation while the overlap lasts."""
        match = KEY_PATTERN.fullmatch(presented)
        if match is None:
            return None
        key_id = match.group(1)
        if self._lookup(key_id) is None and (
            self._clock() - self._last_refresh >= UNKNOWN_REFRESH_SECONDS
        ):
            await self.refresh()  # created (or rotated) since the last refresh, perhaps
        record, expected = self._lookup(key_id) or (None, "0" * 64)
        matches = hmac.compare_digest(hash_key(presented), expected)
        if record is None or not matches or not record.usable(self._now()):
            return None
        if key_id != record.key_id and not self._overlapping(record):
            return None
        return record

    def _lookup(self, key_id: str) -> tuple[KeyRecord, str] | None:
        """The record ``key_id`` names and the hash its value must have: the current id's,
        else a rotated-away id's (checked against `_overlapping` by the caller)."""
        record = self._by_id.get(key_id)
        if record is not None:
            return record, record.key_hash
        record = self._by_previous_id.get(key_id)
        if record is not None and record.previous_key_hash is not None:
            return record, record.previous_key_hash
        return None

    def _overlapping(self, record: KeyRecord) -> bool:
        """Whether ``record``'s value before its rotation still works."""
        ends = record.previous_expires_at
        return ends is not None and self._now() < ends

    def health(self) -> dict[str, Any]:
        age = self._clock() - self._last_refresh
        return {
            "keys": len(self._by_id),
            "refreshed_seconds_ago": round(age, 3) if age != float("inf") else None,
            "error": self.last_error,
        }
