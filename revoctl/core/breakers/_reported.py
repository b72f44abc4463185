"""`ReportedStates`: the state a process reports for each breaker, and how often it changed.

What a process reports for a breaker (the runtime's ``revoctl_breaker_state``) is the
fleet's state, as the control plane last read it from the store, or this process's
own where that is worse: a breaker the process has not called yet reports the fleet's
record (its own object does not follow the fleet until its first use), one it uses
reports the worse of the two (its own trip not yet shared, a trip it keeps to itself).
So every process reports an operator's trip within the store's propagation bound,
whether or not it has called that breaker, and the worst process's value is the one
``health`` shows.

Each change of a reported state is counted by (breaker, from, to, source): ``local``
when this process's own calls caused it, ``fleet`` when it followed the fleet's record
(the fleet's decision, an operator's trip or reset). A trip shared by the fleet thus
counts once as ``local`` in the process whose calls failed and once as ``fleet`` in
each process that followed it, never as caused by every process.

Nothing here reads the store: the states are worked out when a breaker changes state
(its listener) and when the control plane has read or written the fleet's records.
What the fleet already holds when this process first reads it (an operator's trip from
before it started) is where this process starts, not a change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from revoctl.core.breakers._states import TransitionEvent
from revoctl.core.breakers.base import StateName

if TYPE_CHECKING:
    from revoctl.core.breakers._control import ControlPlane
    from revoctl.core.breakers._machine import StateMachine

ReportedSource = Literal["local", "fleet"]

SEVERITY: tuple[StateName, ...] = ("closed", "half_open", "open", "forced_open")
"""The states from the least to the most severe: the worse of two is the later one."""


def worse(first: StateName, second: StateName) -> StateName:
    """The more severe of two states."""
    return max(first, second, key=SEVERITY.index)


class ReportedStates:
    """The state this process reports for each breaker it knows, and the count of each
    change of it by (breaker, from, to, source); see the module docstring."""

    def __init__(self, breakers: Mapping[str, StateMachine], control: ControlPlane) -> None:
        self._breakers = breakers
        self._control = control
        self._states: dict[str, StateName] = {}
        self._transitions: dict[tuple[str, StateName, StateName, ReportedSource], int] = {}
        self._started = False
        for breaker in breakers.values():
            breaker.add_listener(self._on_transition)
        control.view.add_listener(self._on_records)

    def states(self) -> dict[str, StateName]:
        """Every breaker this process knows (configured, or in the fleet's records), by
        name, in the state it reports."""
        known = dict.fromkeys([*self._breakers, *self._control.view.states()])
        return {name: self._states.get(name, "closed") for name in known}

    def transitions(self) -> dict[tuple[str, StateName, StateName, ReportedSource], int]:
        """How many times each reported state changed, by (breaker, from, to, source)."""
        return dict(self._transitions)

    def _on_transition(self, event: TransitionEvent) -> None:
        """One of this process's breakers changed state (rare, but on a call's path: no
        await, no store)."""
        cause: ReportedSource = "local" if event.source == "local" else "fleet"
        self._update(event.breaker, cause, self._control.view.states())

    def _on_records(self) -> None:
        """The control plane has read or written the fleet's records."""
        fleet = self._control.view.states()
        for name in dict.fromkeys([*self._breakers, *fleet]):
            self._update(name, "fleet", fleet)
        self._started = True

    def _update(self, name: str, cause: ReportedSource, fleet: Mapping[str, StateName]) -> None:
        state = fleet.get(name, "closed")
        breaker = self._breakers.get(name)
        if breaker is not None and self._control.follows(name):  # in use: follows the fleet
            state = worse(breaker.state.name, state)
        previous = self._states.get(name, "closed")
        self._states[name] = state
        if state != previous and (cause == "local" or self._started):
            key = (name, previous, state, cause)
            self._transitions[key] = self._transitions.get(key, 0) + 1
