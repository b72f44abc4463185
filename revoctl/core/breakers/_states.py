"""A breaker's states, one small object each.

`Closed`, `Open`, `HalfOpen` and `ForcedOpen` each decide admission (`allow()`) and
take outcomes (`record_success()`, `record_failure()`); none of them awaits, so a
state can be consulted on every call without yielding the event loop. A state counts;
what an event does to it (a failure that trips the window, a trial's success, time
running out) it hands to its machine's `step` (`revoctl.core.breakers._machine`), which
decides by the rules the fleet's record follows too (`revoctl.core.breakers._transitions`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

from revoctl.core.breakers._transitions import Elapsed, Event, Failed, TrialSucceeded
from revoctl.core.breakers.base import StateName
from revoctl.core.breakers.settings import CircuitBreakerConfig

Source = Literal["local", "fleet", "operator"]
"""Who decided a transition: this process from its own calls, the fleet's record, an operator."""

COUNTERS = ("calls", "failures", "slow_calls", "rejections", "ignored", "timeouts")
HISTORY = 100
"""Transitions each breaker keeps in memory (the store keeps the fleet's)."""


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


class Machine(Protocol):
    """What a state needs of the machine it belongs to (`StateMachine`)."""

    config: CircuitBreakerConfig
    clock: Callable[[], float]

    def step(self, current: State, event: Event) -> State:
        """Apply the rules to ``event`` in ``current``; the state that stands."""
        ...


class State:
    """One state of one breaker: decides admission and takes outcomes; never awaits.

    Counters (``calls`` completed, ``failures``, ``slow_calls``, ``rejections``,
    ``ignored``, ``timeouts``) count what happened in this state; the machine adds them
    to its totals when the state ends. ``origin`` says whether this process entered the
    state on its own calls (``local``) or following the fleet (``fleet``). ``until`` is
    when the state runs out on its own (None: it does not).
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
    until: float | None = None

    def __init__(self, machine: Machine, origin: Source = "local") -> None:
        self.machine = machine
        self.origin = origin
        self.entered_at = machine.clock()
        self.calls = self.failures = self.slow_calls = 0
        self.rejections = self.ignored = self.timeouts = 0

    def allow(self) -> bool:
        """Whether a call may go through now (the caller counts a refusal): only once
        this state has run out, in the state that follows it."""
        state = self.machine.step(self, Elapsed())
        return state is not self and state.allow()

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

    def __init__(self, machine: Machine, origin: Source = "local") -> None:
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
        self.machine.step(self, Failed(f"{why} (last: {cause})"))

    @property
    def failure_count(self) -> int:
        """Failures among the last ``window_size`` calls."""
        horizon = self.calls - self.machine.config.window_size
        return sum(1 for number in self._failed if number > horizon)


class Open(State):
    """Calls are refused until ``until`` (this process's clock); then trial calls."""

    __slots__ = ("reason", "until")
    name = "open"
    until: float

    def __init__(
        self, machine: Machine, until: float, reason: str | None, origin: Source = "local"
    ) -> None:
        super().__init__(machine, origin)
        self.until = until
        self.reason = reason

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
        machine: Machine,
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
        if self.machine.step(self, TrialSucceeded(self.calls - self.failures)) is self:
            self.permits = max(0, self.machine.config.success_threshold - self.calls)

    def may_ask(self) -> bool:
        """Whether asking the fleet for a permit can succeed: the round has permits left,
        or has lapsed."""
        if not self.exhausted:
            return True
        return self.lapses is not None and self.machine.clock() >= self.lapses

    def record_success(self) -> None:
        self.calls += 1
        if not self.fleet:
            self.machine.step(self, TrialSucceeded(self.calls - self.failures))

    def record_failure(self, cause: str) -> None:
        self.calls += 1
        self.failures += 1
        self.machine.step(self, Failed(f"trial call failed: {cause}"))

    def retry_after(self) -> float | None:
        return None if self.exhausted else 0.0


class ForcedOpen(State):
    """An operator's trip: every call refused until reset, or until ``until`` when given."""

    __slots__ = ("actor", "reason", "until")
    name = "forced_open"

    def __init__(
        self,
        machine: Machine,
        until: float | None,
        reason: str | None,
        actor: str | None,
        origin: Source = "operator",
    ) -> None:
        super().__init__(machine, origin)
        self.until = until
        self.reason = reason
        self.actor = actor

    def retry_after(self) -> float | None:
        return None if self.until is None else max(0.0, self.until - self.machine.clock())
