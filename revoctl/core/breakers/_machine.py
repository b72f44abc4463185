"""`StateMachine`: one breaker's current state, and the one place it changes.

Every change of state goes through `StateMachine.transition()`, which refuses a change
decided on a state that is no longer current, folds the old state's counters into the
totals, records the transition with its cause and emits a `TransitionEvent` to
listeners (the control plane that shares it, the runtime's metrics, logs). A state's
own events are decided by the rules in `revoctl.core.breakers._transitions`
(`StateMachine.step`), the same ones the fleet's record follows.

`StateMachine.follow()` brings a process in line with the fleet's shared record,
which `revoctl.core.breakers._shared` writes. The clock is injected (`time.monotonic`
by default), so tests drive time.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from revoctl.core.breakers._states import (
    COUNTERS,
    HISTORY,
    Closed,
    ForcedOpen,
    HalfOpen,
    Open,
    Source,
    State,
    TransitionEvent,
)
from revoctl.core.breakers._transitions import Event, Move, round_full
from revoctl.core.breakers._transitions import transition as rules
from revoctl.core.breakers.base import FleetLink, SharedState
from revoctl.core.breakers.settings import CircuitBreakerConfig

logger = logging.getLogger("revoctl.breakers")

Listener = Callable[[TransitionEvent], None]


class StateMachine:
    """One breaker's current state, its totals and its recent transitions.

    ``fleet`` links the breaker to the fleet it belongs to (None: it decides alone);
    while the store answers, half-open permits come from the fleet's lease.
    """

    def __init__(
        self,
        config: CircuitBreakerConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        fleet: FleetLink | None = None,
    ) -> None:
        self.name = config.name
        self.config = config
        self.clock = clock
        self.fleet = fleet
        self.generation = 0
        self.followed = -1
        """The version of the fleet's record this process last followed."""
        self.transition_count = 0
        self.totals = dict.fromkeys(COUNTERS, 0)
        self.transitions: deque[TransitionEvent] = deque(maxlen=HISTORY)
        self._listeners: list[Listener] = []
        self.state: State = Closed(self)

    @property
    def shared(self) -> bool:
        """Whether this breaker follows the fleet now (it has one, and the store answers)."""
        return self.fleet is not None and self.fleet.shares(self.name)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` after every transition (it must not block)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def transition(
        self,
        current: State,
        new: State,
        cause: str,
        *,
        source: Source = "local",
        actor: str | None = None,
    ) -> State:
        """Make ``new`` the state, if ``current`` still is: the one place a breaker changes
        state. Returns the state that stands.

        A change decided on a state that has since been replaced (a call that began in
        it and ended after it) is dropped.
        """
        if current is not self.state:
            return self.state
        for counter in COUNTERS:
            self.totals[counter] += getattr(current, counter)
        self.state = new
        if isinstance(current, Closed) and isinstance(new, Closed):
            return new  # a reset of a closed breaker starts its window again: no transition
        self.transition_count += 1
        event = TransitionEvent(
            self.name, current.name, new.name, cause, source, time.time(), actor
        )
        self.transitions.appendleft(event)
        level = logging.INFO if new.name == "closed" else logging.WARNING
        logger.log(level, "breaker %s: %s -> %s (%s)", self.name, current.name, new.name, cause)
        for listener in list(self._listeners):
            listener(event)
        return new

    def step(self, current: State, event: Event) -> State:
        """Apply the rules (`transition` in `revoctl.core.breakers._transitions`) to
        ``event`` in ``current``, on this process's clock. Returns the state that stands."""
        move = rules(current.name, current.until, event, self.clock(), self.config)
        if move is None:
            return current if current is self.state else self.state
        return self.transition(current, self._entered(current, move), move.cause)

    def _entered(self, current: State, move: Move) -> State:
        """The state object ``move`` leads to from ``current`` on this process's own events."""
        if move.to == "open":
            return Open(self, self.clock() if move.until is None else move.until, move.reason)
        if move.to == "half_open":  # trial calls: from the fleet's lease while shared
            fleet = self.shared and self.config.share_trips
            return HalfOpen(self, fleet=fleet, origin=current.origin)
        return Closed(self)

    def go_alone(self) -> None:
        """The store cannot be reached: a half-open breaker runs its own trial calls."""
        if isinstance(self.state, HalfOpen):
            self.state.go_local()

    def join_round(self, state: State, episode: int) -> None:
        """``state`` was granted a permit of the fleet's trial round ``episode``: while it
        is current, it belongs to that round."""
        if state is self.state and isinstance(state, HalfOpen):
            state.episode = episode

    def follow(
        self,
        record: SharedState,
        to_local: Callable[[float | None], float | None],
        *,
        force: bool = False,
    ) -> None:
        """Bring this process in line with the fleet's ``record``, once per version
        (``force``: again). ``to_local`` turns a time on the store's clock into one on
        this process's clock.

        A reset (a new generation) starts the window again whatever the state; an
        operator's trip is followed by every breaker; automatic states only by those
        that share their trips, and never over a trip of this process's own that is
        still on its way to the store.
        """
        if record.version <= self.followed and not force:
            return
        self.followed = max(self.followed, record.version)
        state = self.state
        until = to_local(record.until)
        if record.generation != self.generation:
            self.generation = record.generation
            if record.state == "closed":
                reset = Closed(self, "fleet")
                self.transition(
                    state, reset, "operator reset", source="operator", actor=record.actor
                )
                return
        if record.state == "forced_open":
            self._follow_trip(state, record, until)
            return
        if isinstance(state, ForcedOpen):
            lifted = Closed(self, "fleet")
            state = self.transition(state, lifted, "operator trip lifted", source="fleet")
        if not self.config.share_trips:
            return
        if record.state == "open":
            self._follow_open(state, record, until)
        elif record.state == "half_open":
            self._follow_round(state, record, to_local(record.lease_until))
        elif not isinstance(state, Closed) and state.origin == "fleet":
            self.transition(state, Closed(self, "fleet"), "fleet closed", source="fleet")

    def _follow_trip(self, state: State, record: SharedState, until: float | None) -> None:
        if isinstance(state, ForcedOpen):  # tripped again: a new reason or expiry
            state.until, state.reason, state.actor = until, record.reason, record.actor
            return
        self.transition(
            state,
            ForcedOpen(self, until, record.reason, record.actor),
            f"operator trip: {record.reason}",
            source="operator",
            actor=record.actor,
        )

    def _follow_open(self, state: State, record: SharedState, until: float | None) -> None:
        if isinstance(state, Open):
            state.origin = "fleet"
            if until is not None:
                state.until = until
            return
        opened = Open(self, self.clock() if until is None else until, record.reason, "fleet")
        self.transition(state, opened, f"fleet opened: {record.reason}", source="fleet")

    def _follow_round(self, state: State, record: SharedState, lapses: float | None) -> None:
        exhausted = round_full(record.trials_granted, self.config.success_threshold)
        if isinstance(state, HalfOpen) and (
            state.episode == record.episode or (state.fleet and state.episode == 0)
        ):
            state.episode, state.exhausted, state.lapses = record.episode, exhausted, lapses
            state.origin = "fleet"
            return
        trial = HalfOpen(
            self, fleet=self.shared, episode=record.episode, exhausted=exhausted, origin="fleet"
        )
        trial.lapses = lapses
        self.transition(state, trial, "fleet trial calls", source="fleet")

    def stats(self) -> dict[str, object]:
        """Counters since start (``calls``, ``failures``, ...), the state, how long it has
        held, and its own ``failure_count`` / ``success_count``."""
        state = self.state
        counters = {name: self.totals[name] + getattr(state, name) for name in COUNTERS}
        return {
            "name": self.name,
            "state": state.name,
            "failure_count": state.failure_count,
            "success_count": state.success_count,
            "time_in_state": round(self.clock() - state.entered_at, 3),
            **counters,
            "successes": counters["calls"] - counters["failures"],
            "transitions": self.transition_count,
            "generation": self.generation,
        }
