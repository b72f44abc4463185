"""The fleet's decisions: how a breaker's shared record changes, in one place.

Each function takes the record as read and the store's clock, and returns the
`Change` to compare-and-set (the new record and the transition to append), or None
when there is nothing to write. `write()` runs one decision against a store,
deciding again on the record that won whenever another process wrote first.
Nothing here awaits except `write()`, and nothing here is on a call's hot path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from revoctl.core.breakers.base import (
    BreakerStateStore,
    SharedState,
    StateName,
    Transition,
    Written,
)

CAS_ATTEMPTS = 50
"""Writers re-decide this often before giving up; each lost race means another won."""


@dataclass(frozen=True)
class Change:
    record: SharedState
    transition: Transition | None


Decision = Callable[[SharedState, float], Change | None]


def _next(record: SharedState, now: float, **fields: object) -> SharedState:
    return dataclasses.replace(record, version=record.version + 1, changed_at=now, **fields)  # type: ignore[arg-type]


def _moved(
    record: SharedState, to: StateName, cause: str, process: str, actor: str | None = None
) -> Transition:
    return Transition(record.name, record.state, to, cause, process, "fleet", actor)


def effective_state(record: SharedState, now: float) -> StateName:
    """The state as of ``now``: an operator's trip past its expiry is closed already."""
    if record.state == "forced_open" and record.until is not None and now >= record.until:
        return "closed"
    return record.state


def trip(*, reason: str, actor: str, process: str, for_seconds: float | None) -> Decision:
    """Force open until reset, or for ``for_seconds``."""

    def decide(record: SharedState, now: float) -> Change:
        until = now + for_seconds if for_seconds else None
        expiry = f" for {for_seconds:g}s" if for_seconds else ""
        new = _next(
            record,
            now,
            state="forced_open",
            opened_at=now,
            until=until,
            reason=reason,
            actor=actor,
            trials_granted=0,
            trial_successes=0,
            lease_until=None,
        )
        cause = f"operator trip{expiry}: {reason}"
        return Change(new, _moved(record, "forced_open", cause, process, actor))

    return decide


def reset(*, actor: str, process: str) -> Decision:
    """Closed, every override and counter cleared, and a new generation, so that every
    process starts its window again."""

    def decide(record: SharedState, now: float) -> Change:
        new = SharedState(
            record.name,
            "closed",
            version=record.version + 1,
            generation=record.generation + 1,
            actor=actor,
            episode=record.episode,
            changed_at=now,
        )
        return Change(new, _moved(record, "closed", "operator reset", process, actor))

    return decide


def open_after_failures(
    *, cause: str, generation: int, recovery_timeout: float, process: str
) -> Decision:
    """A process's own window tripped: open the fleet, unless the fleet is not closed
    already or was reset since that window began."""

    def decide(record: SharedState, now: float) -> Change | None:
        if record.generation != generation or effective_state(record, now) != "closed":
            return None
        new = _next(
            record,
            now,
            state="open",
            opened_at=now,
            until=now + recovery_timeout,
            reason=cause,
            actor=None,
            trials_granted=0,
            trial_successes=0,
            lease_until=None,
        )
        return Change(new, _moved(record, "open", cause, process))

    return decide


def grant_trial(*, trials: int, lease: float, process: str) -> Decision:
    """One more trial permit, fleet-wide: the first after the recovery timeout starts a
    round (half-open); a round hands out at most ``trials`` permits; a round whose
    permits were not all reported by ``lease_until`` is replaced by a new one."""

    def decide(record: SharedState, now: float) -> Change | None:
        state = record.state
        if state == "open" and record.until is not None and now >= record.until:
            return _new_round(record, now, "recovery timeout elapsed: trial calls")
        if state == "half_open":
            if record.lease_until is not None and now >= record.lease_until:
                return _new_round(record, now, "trial round lapsed unreported: new trial calls")
            if record.trials_granted < trials:
                return Change(_next(record, now, trials_granted=record.trials_granted + 1), None)
        return None

    def _new_round(record: SharedState, now: float, cause: str) -> Change:
        new = _next(
            record,
            now,
            state="half_open",
            episode=record.episode + 1,
            trials_granted=1,
            trial_successes=0,
            lease_until=now + lease,
        )
        return Change(new, _moved(record, "half_open", cause, process))

    return decide


def trial_outcome(
    *,
    episode: int,
    success: bool,
    success_threshold: int,
    recovery_timeout: float,
    cause: str,
    process: str,
) -> Decision:
    """A trial call's result: ``success_threshold`` successes close the fleet, one
    failure opens it again. Results from an earlier round change nothing."""

    def decide(record: SharedState, now: float) -> Change | None:
        if record.state != "half_open" or record.episode != episode:
            return None
        if not success:
            new = _next(
                record,
                now,
                state="open",
                opened_at=now,
                until=now + recovery_timeout,
                reason=cause,
                lease_until=None,
            )
            return Change(new, _moved(record, "open", cause, process))
        successes = record.trial_successes + 1
        if successes < success_threshold:
            return Change(_next(record, now, trial_successes=successes), None)
        new = _next(
            record,
            now,
            state="closed",
            opened_at=None,
            until=None,
            reason=None,
            trials_granted=0,
            trial_successes=0,
            lease_until=None,
        )
        return Change(new, _moved(record, "closed", f"{successes} trial calls succeeded", process))

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
        if record.state != "forced_open" or effective_state(record, now) != "closed":
            return None
        new = _next(
            record,
            now,
            state="closed",
            opened_at=None,
            until=None,
            reason=None,
            actor=None,
        )
        return Change(new, _moved(record, "closed", "operator trip expired", process))

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
