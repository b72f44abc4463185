"""What ``revoctl breakers status``, ``history`` and ``health`` show of the fleet: built
from the store's records and the processes' reports, nothing read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from revoctl.core.breakers._transitions import effective_state
from revoctl.core.breakers.base import ProcessReport, SharedState, Transition
from revoctl.core.breakers.settings import CircuitBreakerConfig

STALE_REPORTS = 3
"""A process that missed this many reports is flagged stale."""


@dataclass(frozen=True)
class NotClosed:
    """A breaker health names: not closed in the fleet's record (``how`` is its state), or
    reported open by some of the live processes (``how`` says how many)."""

    name: str
    how: str

    def __str__(self) -> str:
        return f"{self.name} ({self.how})"


def iso(epoch: float | None) -> str | None:
    """An epoch time as ISO 8601 (UTC)."""
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def stale(report: ProcessReport, now: float, report_interval: float) -> bool:
    """Whether ``report``'s process has missed `STALE_REPORTS` reports by ``now``."""
    age = now - (report.reported_at or now)
    return age > STALE_REPORTS * report_interval


def breaker_item(
    record: SharedState,
    now: float,
    reports: list[ProcessReport],
    plane: dict[str, Any],
    *,
    breaker: CircuitBreakerConfig | None,
    report_interval: float,
) -> dict[str, Any]:
    """One breaker as ``breakers status`` shows it (the CONTRACT's keys first): the fleet's
    ``record``, each process's report of it, and the control plane's state (``plane``);
    ``breaker`` is its configuration, if this process has one."""
    name = record.name
    state = effective_state(record, now)
    fleet: list[dict[str, Any]] = [
        {
            "process": r.process,
            "role": r.role,
            **{
                key: r.breakers[name].get(key)
                for key in (
                    "state",
                    "failure_count",
                    "success_count",
                    "calls",
                    "failures",
                    "slow_calls",
                    "rejections",
                    "timeouts",
                )
            },
            "reported_at": iso(r.reported_at),
            "stale": stale(r, now, report_interval),
        }
        for r in reports
        if name in r.breakers
    ]
    live = [entry for entry in fleet if not entry["stale"]]
    failures = sum(entry["failure_count"] or 0 for entry in live)
    successes = (
        record.trial_successes
        if state == "half_open"
        else sum(entry["success_count"] or 0 for entry in live)
    )
    closed = state == "closed"
    return {
        "name": name,
        "state": state,
        "failure_count": failures,
        "success_count": successes,
        "opened_at": None if closed else iso(record.opened_at),
        "forced": state == "forced_open",
        "reason": None if closed else record.reason,
        "until": None if closed else iso(record.until),
        "actor": record.actor,
        "changed_at": iso(record.changed_at),
        "generation": record.generation,
        "share_trips": breaker.share_trips if breaker else None,
        "processes": len(live),
        "open_processes": sum(1 for entry in live if entry["state"] != "closed"),
        "fleet": fleet,
        "control_plane": plane,
    }


def transition_item(transition: Transition) -> dict[str, Any]:
    """One transition as ``breakers history`` shows it."""
    return {
        "at": iso(transition.at),
        "from": transition.from_state,
        "to": transition.to_state,
        "cause": transition.cause,
        "actor": transition.actor,
        "process": transition.process,
        "scope": transition.scope,
    }
