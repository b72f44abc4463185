"""A breaker's states, one small object each, and the one place they change.

`Closed`, `Open`, `HalfOpen` and `ForcedOpen` each decide admission (`allow()`) and
take outcomes (`record_success()`, `record_failure()`); none of them awaits, so a
state can be consulted on every call without yielding the event loop. Every change
of state goes through `StateMachine.transition()`, which refuses a change decided on
a state that is no longer current, folds the old state's counters into the totals,
records the transition with its cause and emits a `TransitionEvent` to listeners
(the control plane that shares it, the runtime's metrics, logs).

`StateMachine.follow()` brings a process in line with the fleet's shared record;
the decisions about that record itself live in `revoctl.core.breakers._shared`.
The clock is injected (`time.monotonic` by default), so tests drive time.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

from revoctl.core.breakers.base import SharedState, StateName
from revoctl.core.breakers.settings import CircuitBreakerConfig

Source = Literal["local", "fleet", "operator"]
"""Who decided a transition: this process from its own calls, the fleet's record, an operator."""

COUNTERS = ("calls", "failures", "slow_calls", "rejections", "ignored", "timeouts")
HISTORY = 100
"""Transitions each breaker keeps in memory (the store keeps the fleet's)."""

logger = logging.getLogger("revoctl.breakers")


@dataclass(frozen=True)
class TransitionEvent:
    """A breaker changed state; ``at`` is this host's clock (epoch seconds)."""

    breaker: str
    from_state: StateName
    to_state: StateName
    cause: str
    source: Source
    at: float
    actor: str | None = None


class State:
    """One state of one breaker: decides admission and takes outcomes; never awaits.

    Counters (``calls`` completed, ``failures``, ``slow_calls``, ``rejections``,
    ``ignored``, ``timeouts``) count what happened in this state; the machine adds them
    to its totals when the state ends. ``origin`` says whether this process entered the
    state on its own calls (``local``) or following the fleet (``fleet``).
    """

    __slots__ = (
        "calls",
        "entered_at",
        "failures",
        "ignored",
        "machine",
        "origin",
        "rejections",
        "slow_calls",
        "timeouts",
    )
    name: ClassVar[StateName]

    def __init__(self, machine: StateMachine, origin: Source = "local") -> None:
        self.machine = machine
        self.origin = origin
        self.entered_at = machine.clock()
        self.calls = self.failures = self.slow_calls = 0
        self.rejections = self.ignored = self.timeouts = 0

    def allow(self) -> bool:
        """Whether a call may go through now (the caller counts a refusal)."""
        return False

    def record_success(self) -> None:
        self.calls += 1

    def record_failure(self, cause: str) -> None:
        self.calls += 1
        self.failures += 1

    @property
    def failure_count(self) -> int:
        return self.failures

    @property
    def success_count(self) -> int:
        return self.calls - self.failures

    def retry_after(self) -> float | None:
        """Seconds until a call may be let through, if this state knows."""
        return 0.0


class Closed(State):
    """Calls go through. Opens on ``failure_threshold`` consecutive failures, or when the
    failed share of the last ``window_size`` calls reaches ``failure_rate_threshold``.

    The window is kept as the call numbers of its failures only, so a success costs two
    assignments: ``calls += 1`` and ``consecutive = 0``.
    """

    __slots__ = ("_failed", "consecutive")
    name = "closed"

    def __init__(self, machine: StateMachine, origin: Source = "local") -> None:
        super().__init__(machine, origin)
        self.consecutive = 0
        self._failed: deque[int] = deque()

    def allow(self) -> bool:
        return True

    def record_success(self) -> None:
        self.calls += 1
        self.consecutive = 0

    def record_failure(self, cause: str) -> None:
        self.calls += 1
        self.failures += 1
        self.consecutive += 1
        config = self.machine.config
        failed = self._failed
        failed.append(self.calls)
        horizon = self.calls - config.window_size
        while failed[0] <= horizon:
            failed.popleft()
        in_window = min(self.calls, config.window_size)
        if self.consecutive >= config.failure_threshold:
            why = f"{self.consecutive} consecutive failures"
        elif (
            config.failure_rate_threshold
            and in_window >= config.minimum_calls
            and len(failed) * 100 >= config.failure_rate_threshold * in_window
        ):
            why = f"{len(failed)} of the last {in_window} calls failed"
        else:
            return
        self.machine.open(self, f"{why} (last: {cause})")

    @property
    def failure_count(self) -> int:
        """Failures among the last ``window_size`` calls."""
        horizon = self.calls - self.machine.config.window_size
        return sum(1 for number in self._failed if number > horizon)


class Open(State):
    """Calls are refused until ``until`` (this process's clock); then trial calls."""

    __slots__ = ("reason", "until")
    name = "open"

    def __init__(
        self, machine: StateMachine, until: float, reason: str | None, origin: Source = "local"
    ) -> None:
        super().__init__(machine, origin)
        self.until = until
        self.reason = reason

    def allow(self) -> bool:
        if self.machine.clock() >= self.until:
            return self.machine.recovery_elapsed(self).allow()
        return False

    def retry_after(self) -> float:
        return max(0.0, self.until - self.machine.clock())


class HalfOpen(State):
    """A limited number of trial calls. Alone, this process lets ``success_threshold``
    through: that many successes close it, one failure opens it again. Sharing the
    fleet's trips (``fleet``), its permits come from the store's lease and the store
    decides when the fleet closes; ``exhausted`` says the round's permits are all taken.
    """

    __slots__ = ("episode", "exhausted", "fleet", "lapses", "permits")
    name = "half_open"

    def __init__(
        self,
        machine: StateMachine,
        *,
        fleet: bool,
        episode: int = 0,
        exhausted: bool = False,
        origin: Source = "local",
    ) -> None:
        super().__init__(machine, origin)
        self.fleet = fleet
        self.episode = episode
        self.exhausted = exhausted
        self.lapses: float | None = None
        """When the fleet's round lapses unless its permits are reported (this clock)."""
        self.permits = 0 if fleet else machine.config.success_threshold

    def allow(self) -> bool:
        if self.permits > 0:
            self.permits -= 1
            return True
        return False

    def go_local(self) -> None:
        """The store cannot be reached: this process runs its own trial calls (and closes
        now if its own trials already succeeded often enough)."""
        if not self.fleet:
            return
        self.fleet = False
        threshold = self.machine.config.success_threshold
        if self.calls - self.failures >= threshold:
            cause = f"{threshold} trial calls succeeded"
            self.machine.transition(self, Closed(self.machine), cause)
        else:
            self.permits = max(0, threshold - self.calls)

    def may_ask(self) -> bool:
        """Whether asking the fleet for a permit can succeed: the round has permits left,
        or has lapsed."""
        if not self.exhausted:
            return True
        return self.lapses is not None and self.machine.clock() >= self.lapses

    def record_success(self) -> None:
        self.calls += 1
        threshold = self.machine.config.success_threshold
        if not self.fleet and self.calls - self.failures >= threshold:
            cause = f"{threshold} trial calls succeeded"
            self.machine.transition(self, Closed(self.machine), cause)

    def record_failure(self, cause: str) -> None:
        self.calls += 1
        self.failures += 1
        self.machine.open(self, f"trial call failed: {cause}")

    def retry_after(self) -> float | None:
        return None if self.exhausted else 0.0


class ForcedOpen(State):
    """An operator's trip: every call refused until reset, or until ``until`` when given."""

    __slots__ = ("actor", "reason", "until")
    name = "forced_open"

    def __init__(
        self,
        machine: StateMachine,
        until: float | None,
        reason: str | None,
        actor: str | None,
        origin: Source = "operator",
    ) -> None:
        super().__init__(machine, origin)
        self.until = until
        self.reason = reason
        self.actor = actor

    def allow(self) -> bool:
        if self.until is not None and self.machine.clock() >= self.until:
            closed = Closed(self.machine)
            return self.machine.transition(self, closed, "operator trip expired").allow()
        return False

    def retry_after(self) -> float | None:
        return None if self.until is None else max(0.0, self.until - self.machine.clock())


Listener = Callable[[TransitionEvent], None]


class StateMachine:
    """One breaker's current state, its totals and its recent transitions.

    ``shared`` is set by the control plane while it can reach the store and the
    breaker shares its trips: half-open permits then come from the fleet's lease.
    """

    def __init__(
        self, config: CircuitBreakerConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = config.name
        self.config = config
        self.clock = clock
        self.shared = False
        self.generation = 0
        self.followed = -1
        """The version of the fleet's record this process last followed."""
        self.transition_count = 0
        self.totals = dict.fromkeys(COUNTERS, 0)
        self.transitions: deque[TransitionEvent] = deque(maxlen=HISTORY)
        self._listeners: list[Listener] = []
        self.state: State = Closed(self)

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

    def open(self, current: State, cause: str) -> State:
        """Open for ``recovery_timeout`` on this process's own calls."""
        until = self.clock() + self.config.recovery_timeout
        return self.transition(current, Open(self, until, cause), cause)

    def recovery_elapsed(self, current: Open) -> State:
        """Half-open: trial calls, from the fleet's lease while shared."""
        fleet = self.shared and self.config.share_trips
        half_open = HalfOpen(self, fleet=fleet, origin=current.origin)
        return self.transition(current, half_open, "recovery timeout elapsed")

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
                self.transition(
                    state,
                    Closed(self, "fleet"),
                    "operator reset",
                    source="operator",
                    actor=record.actor,
                )
                return
        if record.state == "forced_open":
            if isinstance(state, ForcedOpen):  # tripped again: a new reason or expiry
                state.until, state.reason, state.actor = until, record.reason, record.actor
            else:
                self.transition(
                    state,
                    ForcedOpen(self, until, record.reason, record.actor),
                    f"operator trip: {record.reason}",
                    source="operator",
                    actor=record.actor,
                )
            return
        if isinstance(state, ForcedOpen):
            lifted = Closed(self, "fleet")
            state = self.transition(state, lifted, "operator trip lifted", source="fleet")
        if not self.config.share_trips:
            return
        if record.state == "open":
            if isinstance(state, Open):
                state.origin = "fleet"
                if until is not None:
                    state.until = until
                return
            opened = Open(self, self.clock() if until is None else until, record.reason, "fleet")
            self.transition(state, opened, f"fleet opened: {record.reason}", source="fleet")
        elif record.state == "half_open":
            exhausted = record.trials_granted >= self.config.success_threshold
            lapses = to_local(record.lease_until)
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
        elif not isinstance(state, Closed) and state.origin == "fleet":
            self.transition(state, Closed(self, "fleet"), "fleet closed", source="fleet")

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
