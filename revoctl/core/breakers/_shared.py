"""The fleet's decisions: how a breaker's shared record changes, in one place.

Each function takes the record as read and the store's clock, and returns the
`Change` to compare-and-set (the new record and the transition to append), or None
when there is nothing to write. What a change is follows the rules every breaker
follows (`revoctl.core.breakers._transitions`); here they are laid onto the record.
`write()` runs one decision against a store, deciding again on the record that won
whenever another process wrote first. Nothing here awaits except `write()`, and
nothing here is on a call's hot path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from revoctl.core.breakers._transitions import (
    NO_THRESHOLDS,
    Failed,
    Move,
    Reset,
    TrialSucceeded,
    Tripped,
    effective_state,
    ran_out,
    round_full,
    transition,
)
from revoctl.core.breakers.base import BreakerStateStore, SharedState, Transition, Written
from revoctl.core.breakers.settings import CircuitBreakerConfig

CAS_ATTEMPTS = 50
"""Writers re-decide this often before giving up; each lost race means another won."""


@dataclass(frozen=True)
class Change:
    record: SharedState
    transition: Transition | None


Decision = Callable[[SharedState, float], Change | None]


def _next(record: SharedState, now: float, **fields: object) -> SharedState:
    return dataclasses.replace(record, version=record.version + 1, changed_at=now, **fields)  # type: ignore[arg-type]


def _moved(record: SharedState, move: Move, now: float, process: str, **fields: object) -> Change:
    """``record`` after ``move``: the fields of the state it enters (a trial round's come
    in ``fields``), and the transition to append."""
    entered: dict[str, object] = {}
    if move.to != "half_open":  # open, forced open or closed: no trial round, no counts
        opened = move.to != "closed"
        entered = {
            "opened_at": now if opened else None,
            "until": move.until,
            "reason": move.reason,
            "actor": move.actor,
            "trials_granted": 0,
            "trial_successes": 0,
            "lease_until": None,
        }
    new = _next(record, now, state=move.to, **(entered | fields))
    step = Transition(record.name, record.state, move.to, move.cause, process, "fleet", move.actor)
    return Change(new, step)


def trip(*, reason: str, actor: str, process: str, for_seconds: float | None) -> Decision:
    """Force open until reset, or for ``for_seconds``."""
    event = Tripped(reason, actor, for_seconds)

    def decide(record: SharedState, now: float) -> Change | None:
        move = transition(record.state, record.until, event, now, NO_THRESHOLDS)
        return None if move is None else _moved(record, move, now, process)

    return decide


def reset(*, actor: str, process: str) -> Decision:
    """Closed, every override and counter cleared, and a new generation, so that every
    process starts its window again. History records transitions only: the reset of a
    closed breaker restarts the windows and appends nothing."""
    event = Reset(actor)

    def decide(record: SharedState, now: float) -> Change | None:
        move = transition(record.state, record.until, event, now, NO_THRESHOLDS)
        if move is None:
            return None
        change = _moved(record, move, now, process, generation=record.generation + 1)
        return change if record.state != "closed" else Change(change.record, None)

    return decide


def open_after_failures(
    *, cause: str, generation: int, config: CircuitBreakerConfig, process: str
) -> Decision:
    """A process's own window tripped: open the fleet, unless the fleet is not closed
    already or was reset since that window began."""
    event = Failed(cause)

    def decide(record: SharedState, now: float) -> Change | None:
        if record.generation != generation or effective_state(record, now) != "closed":
            return None
        move = transition("closed", None, event, now, config)
        return None if move is None else _moved(record, move, now, process)

    return decide


def grant_trial(*, trials: int, lease: float, process: str) -> Decision:
    """One more trial permit, fleet-wide: the first after the recovery timeout starts a
    round (half-open); a round hands out at most ``trials`` permits; a round whose
    permits were not all reported by ``lease_until`` is replaced by a new one."""

    def decide(record: SharedState, now: float) -> Change | None:
        if record.state == "open":
            move = ran_out(record.state, record.until, now)
            return None if move is None else _new_round(record, now, f"{move.cause}: trial calls")
        if record.state == "half_open":
            if record.lease_until is not None and now >= record.lease_until:
                return _new_round(record, now, "trial round lapsed unreported: new trial calls")
            if not round_full(record.trials_granted, trials):
                return Change(_next(record, now, trials_granted=record.trials_granted + 1), None)
        return None

    def _new_round(record: SharedState, now: float, cause: str) -> Change:
        return _moved(
            record,
            Move("half_open", cause),
            now,
            process,
            episode=record.episode + 1,
            trials_granted=1,
            trial_successes=0,
            lease_until=now + lease,
        )

    return decide


def trial_outcome(
    *, episode: int, success: bool, config: CircuitBreakerConfig, cause: str, process: str
) -> Decision:
    """A trial call's result: ``success_threshold`` successes close the fleet, one
    failure opens it again. Results from an earlier round change nothing."""

    def decide(record: SharedState, now: float) -> Change | None:
        if record.state != "half_open" or record.episode != episode:
            return None
        successes = record.trial_successes + 1
        event = TrialSucceeded(successes) if success else Failed(cause)
        move = transition(record.state, record.until, event, now, config)
        if move is None:  # a success, short of the threshold
            return Change(_next(record, now, trial_successes=successes), None)
        return _moved(record, move, now, process)

    return decide


def release_trial(*, episode: int) -> Decision:
    """A permit given back unused (the trial was cancelled or its error is not counted)."""

    def decide(record: SharedState, now: float) -> Change | None:
        if record.state != "half_open" or record.episode != episode or record.trials_granted < 1:
            return None
        return Change(_next(record, now, trials_granted=record.trials_granted - 1), None)

    return decide


def expire_trip(*, process: str) -> Decision:
    """Write down that an operator's timed trip has run out."""

    def decide(record: SharedState, now: float) -> Change | None:
        move = ran_out(record.state, record.until, now) if record.forced else None
        return None if move is None else _moved(record, move, now, process)

    return decide


async def write(
    store: BreakerStateStore, decide: Decision, record: SharedState, now: float
) -> Written:
    """Apply ``decide`` to ``record`` (read at ``now``) by compare-and-set, deciding again
    on the stored record whenever another writer came first.

    ``applied`` is false when the decision, on the record that stands, was to write
    nothing; ``current`` is that record.

    :raises BackendUnavailableError: the store cannot be reached.
    :raises RuntimeError: the record kept changing under every attempt.
    """
    for _ in range(CAS_ATTEMPTS):
        change = decide(record, now)
        if change is None:
            return Written(False, record, now)
        written = await store.compare_and_set(change.record, change.transition)
        if written.applied:
            return written
        record, now = written.current, written.now
    raise RuntimeError(f"breaker {record.name!r}: the shared record kept changing; not written")
