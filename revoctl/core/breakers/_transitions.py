"""The rules of a breaker's life, written once, for one process and for the fleet alike.

::

    closed --failures--> open --recovery timeout--> half_open --enough successes--> closed
                          ^                            |
                          +------a trial fails---------+
    any --operator trip--> forced_open --reset, or the trip's expiry--> closed

Two things follow these rules: each process's own state (`revoctl.core.breakers._states`,
on its own calls and its own clock) and the fleet's shared record
(`revoctl.core.breakers._shared`, on the store's clock). `transition(state, until, event,
now, config)` is the one place that decides: given a state, when it runs out (``until``)
and what happened, it returns the `Move` to make, or None. The process makes a move by
entering the next state object, the fleet by writing the next record; how the record is
laid over a process's own state is `StateMachine.follow`, which uses the same rules.

Nothing here reads a clock, awaits or keeps state.
"""

from __future__ import annotations

from dataclasses import dataclass

from revoctl.core.breakers.base import SharedState, StateName
from revoctl.core.breakers.settings import CircuitBreakerConfig


@dataclass(frozen=True, slots=True)
class Move:
    """Where a breaker goes, and why; ``until`` is when the new state runs out (open: when
    trial calls may start; forced open: when the trip expires; None: never)."""

    to: StateName
    cause: str
    until: float | None = None
    reason: str | None = None
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class Elapsed:
    """Time passed: an open breaker's recovery timeout, or an operator's timed trip, may
    have run out."""


@dataclass(frozen=True, slots=True)
class Failed:
    """Calls failed: a closed breaker's window tripped, or a trial call failed."""

    cause: str


@dataclass(frozen=True, slots=True)
class TrialSucceeded:
    """A trial call succeeded, the ``successes``-th of its round."""

    successes: int


@dataclass(frozen=True, slots=True)
class Tripped:
    """An operator forced the breaker open, until reset or for ``for_seconds``."""

    reason: str
    actor: str
    for_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Reset:
    """An operator closed the breaker, every override and counter cleared."""

    actor: str


Event = Elapsed | Failed | TrialSucceeded | Tripped | Reset


def transition(
    state: StateName,
    until: float | None,
    event: Event,
    now: float,
    config: CircuitBreakerConfig,
) -> Move | None:
    """The move ``event`` makes from ``state`` at ``now`` (None: it stays).

    A failure opens a closed or half-open breaker for ``recovery_timeout``; an open
    breaker past ``until`` starts trial calls; ``success_threshold`` successful trials
    close it; an operator's trip past ``until`` has expired.
    """
    match event:
        case Elapsed():
            if until is None or now < until:
                return None
            if state == "forced_open":
                return Move("closed", "operator trip expired")
            if state == "open":
                return Move("half_open", "recovery timeout elapsed")
        case Failed(cause):
            if state in ("closed", "half_open"):
                return Move("open", cause, until=now + config.recovery_timeout, reason=cause)
        case TrialSucceeded(successes):
            if state == "half_open" and successes >= config.success_threshold:
                return Move("closed", f"{successes} trial calls succeeded")
        case Tripped(reason, actor, for_seconds):
            expiry = f" for {for_seconds:g}s" if for_seconds else ""
            return Move(
                "forced_open",
                f"operator trip{expiry}: {reason}",
                until=now + for_seconds if for_seconds else None,
                reason=reason,
                actor=actor,
            )
        case Reset(actor):
            return Move("closed", "operator reset", actor=actor)
    return None


def ran_out(state: StateName, until: float | None, now: float) -> Move | None:
    """The move time alone makes by ``now`` (`Elapsed`): it needs no thresholds."""
    return transition(state, until, Elapsed(), now, NO_THRESHOLDS)


def effective_state(record: SharedState, now: float) -> StateName:
    """The fleet's state as of ``now``: an operator's trip past its expiry is closed
    already (an open breaker stays open until a trial call is asked for)."""
    if not record.forced:
        return record.state
    expired = ran_out(record.state, record.until, now)
    return record.state if expired is None else expired.to


def round_full(trials_granted: int, success_threshold: int) -> bool:
    """Whether a fleet's trial round has handed out all its permits: one per success it
    needs to close."""
    return trials_granted >= success_threshold


def trial_lease(config: CircuitBreakerConfig) -> float:
    """How long a trial round's permits stay out before the round lapses: one call's
    timeout (or the recovery timeout) and a second."""
    return (config.timeout or config.recovery_timeout or 1.0) + 1.0


NO_THRESHOLDS = CircuitBreakerConfig()
"""The configuration for events that use no thresholds: time running out, an operator's
trip or reset."""
