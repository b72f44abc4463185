"""What the breakers share through a store, the small protocol every store implements,
and `FleetLink`, what a breaker asks of the fleet it belongs to.

The store holds only the fleet's part: one `SharedState` record per breaker (its
state, an operator's override, the half-open trial lease, the reset generation),
the transitions (`Transition`, newest first) and each process's recent statistics
(`ProcessReport`, dropped when the process stops reporting). Every record change is
one `compare_and_set`: the caller reads, decides in Python (`revoctl.core.breakers._shared`,
the one place those decisions are made), and writes only if nobody wrote in between.
Times are the store's clock, in epoch seconds, so hosts whose clocks disagree still
agree on when a breaker opened or an operator's trip expires.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Self

StateName = Literal["closed", "open", "half_open", "forced_open"]
STATES: tuple[StateName, ...] = ("closed", "open", "half_open", "forced_open")

Scope = Literal["fleet", "local"]
"""A transition of the shared record, or of one process alone (a trip not shared)."""
STORE_POOL_WAIT = 0.5
"""The longest a store call waits for a free pooled connection (Redis ``max_connections``,
the database pool) before it raises `PoolExhaustedError`: half the second a call waits
for a trial permit (`revoctl.core.breakers._control.PERMIT_TIMEOUT`), and far below the
database's ``pool_timeout``, so a busy pool never stalls the control plane's loop."""


class _Stored:
    """A record kept as compact JSON (a dataclass's fields)."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        """A record from JSON; keys this version does not know (a newer revoctl wrote
        them) are dropped, fields it does not find take their defaults."""
        data = json.loads(text)
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        return cls(**{f.name: data[f.name] for f in fields if f.name in data})


@dataclass(frozen=True)
class SharedState(_Stored):
    """One breaker's fleet-wide record; ``version`` grows by one with every write.

    ``until`` is when an open breaker may start trial calls, or when an operator's
    trip expires (None: until reset). In ``half_open``, ``episode`` numbers the trial
    round, ``trials_granted`` counts the permits handed out (at most the breaker's
    ``success_threshold``), and ``lease_until`` is when unreported permits lapse and a
    new round may start. ``generation`` grows with every reset: a process that sees a
    new generation starts its window again.
    """

    name: str
    state: StateName = "closed"
    version: int = 0
    generation: int = 0
    opened_at: float | None = None
    until: float | None = None
    reason: str | None = None
    actor: str | None = None
    episode: int = 0
    trials_granted: int = 0
    trial_successes: int = 0
    lease_until: float | None = None
    changed_at: float | None = None

    @property
    def forced(self) -> bool:
        return self.state == "forced_open"


@dataclass(frozen=True)
class Transition(_Stored):
    """One change of a breaker's state, with its cause; ``at`` is set by the store."""

    name: str
    from_state: StateName
    to_state: StateName
    cause: str
    process: str
    scope: Scope = "fleet"
    actor: str | None = None
    at: float | None = None


@dataclass(frozen=True)
class ProcessReport:
    """One process's recent statistics, by breaker; ``reported_at`` is set by the store."""

    process: str
    role: str
    breakers: dict[str, dict[str, Any]] = field(default_factory=dict)
    reported_at: float | None = None

    def to_json(self) -> str:
        return json.dumps(
            {"process": self.process, "role": self.role, "breakers": self.breakers},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes, reported_at: float | None = None) -> ProcessReport:
        data = json.loads(text)
        return cls(data["process"], data["role"], data.get("breakers", {}), reported_at)


@dataclass(frozen=True)
class Snapshot:
    """Every record the store holds, read at ``now`` (the store's clock)."""

    now: float
    records: dict[str, SharedState]

    def record(self, name: str) -> SharedState:
        """``name``'s record; a breaker never written to is closed, version 0."""
        return self.records.get(name) or SharedState(name)


@dataclass(frozen=True)
class Written:
    """The outcome of a compare-and-set: ``applied``, and the record the store now holds."""

    applied: bool
    current: SharedState
    now: float


class FleetLink(Protocol):
    """What a breaker asks of the fleet it belongs to (`ControlPlane`), given to it at
    construction; a breaker without one decides alone. Breakers are named, never
    handed over: the link keeps their fleet-side state itself.
    """

    def shares(self, name: str) -> bool:
        """Whether breaker ``name`` follows the fleet now: it is in use and the store
        answers (its half-open trial permits then come from the fleet's lease)."""
        ...

    async def first_read(self) -> None:
        """Return once the fleet's state has been read (or failed to be) once: a new
        process's first calls must not pass a breaker the fleet has open."""
        ...

    async def acquire_trial(self, name: str) -> bool | None:
        """A trial permit from the fleet's lease for ``name``'s current half-open state:
        True when granted, False when refused, None when the store cannot be reached."""
        ...

    def report_trial(self, name: str, episode: int, success: bool | None, cause: str) -> None:
        """Tell the fleet how a trial call of round ``episode`` went (None: it did not
        count; its permit is given back), without waiting."""
        ...


class BreakerStateStore(Protocol):
    """Where the fleet's shared part lives (`MemoryBreakerStateStore`,
    `SqlBreakerStateStore`, `RedisBreakerStateStore`).

    Each method is one atomic step on the store. They raise `BackendUnavailableError`
    when the store cannot be reached, and `UsageError` when it is not set up (an
    unmigrated database).
    """

    kind: str

    def describe(self) -> str:
        """The store for messages: its kind and where it is, never a password."""
        ...

    async def read(self) -> Snapshot:
        """Every breaker's record, and the store's clock."""
        ...

    async def compare_and_set(self, record: SharedState, transition: Transition | None) -> Written:
        """Store ``record`` if the stored version is ``record.version - 1`` (0: none stored),
        and append ``transition`` to the history in the same step."""
        ...

    async def append_history(self, transition: Transition) -> None:
        """Record a transition that changed no shared record (one process's own trip)."""
        ...

    async def history(self, name: str, limit: int) -> list[Transition]:
        """``name``'s transitions, newest first."""
        ...

    async def report(self, report: ProcessReport, ttl: float) -> None:
        """Store this process's statistics, kept for ``ttl`` seconds unless reported again."""
        ...

    async def fleet(self) -> tuple[float, list[ProcessReport]]:
        """The store's clock and every process report not yet expired."""
        ...

    def changes(self) -> AsyncIterator[str] | None:
        """Names of breakers whose record changed, pushed as they change; None when the
        store cannot push (the caller then relies on polling alone)."""
        ...

    async def close(self) -> None: ...
