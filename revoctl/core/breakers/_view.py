"""`FleetView`: the fleet's records as this process last read or wrote them, and the
store's clock as estimated from then.

Times in the records are the store's clock; `to_local` turns one into a time on this
process's clock, assuming both clocks ran alike since the last read or write, so a
breaker can follow a record without asking the store what time it is. Listeners hear
of every read and write (the reported states, for the runtime's metrics).
"""

from __future__ import annotations

from collections.abc import Callable

from revoctl.core.breakers._transitions import effective_state
from revoctl.core.breakers.base import SharedState, Snapshot, StateName, Written


class FleetView:
    """Every breaker's shared record as last seen; ``clock`` is this process's."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._records: dict[str, SharedState] = {}
        self._base = (0.0, 0.0)  # (store clock, local clock) when last seen
        self._listeners: list[Callable[[], None]] = []

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after each read of the records, and after each write to one
        (it must not block)."""
        self._listeners.append(listener)

    def read(self, snapshot: Snapshot) -> None:
        """Every record, as just read from the store."""
        self._base = (snapshot.now, self.clock())
        self._records = dict(snapshot.records)

    def wrote(self, written: Written) -> None:
        """One record, as a write just left it."""
        self._base = (written.now, self.clock())
        self._records[written.current.name] = written.current

    def changed(self) -> None:
        """Tell the listeners the records were read or written."""
        for listener in list(self._listeners):
            listener()

    def record(self, name: str) -> SharedState:
        """``name``'s record; one never seen is closed, version 0."""
        return self._records.get(name) or SharedState(name)

    def known(self, name: str) -> bool:
        return name in self._records

    def states(self) -> dict[str, StateName]:
        """Each breaker the fleet has a record for, in its state as of now (an operator's
        trip past its expiry is closed): no store round trip."""
        now = self.store_now()
        return {name: effective_state(r, now) for name, r in self._records.items()}

    def store_now(self) -> float:
        """The store's clock, estimated from the last read or write."""
        store_time, local_time = self._base
        return store_time + (self.clock() - local_time)

    def to_local(self, store_time: float | None) -> float | None:
        """A time on the store's clock as a time on this process's ``clock``."""
        if store_time is None:
            return None
        return self.clock() + (store_time - self.store_now())
