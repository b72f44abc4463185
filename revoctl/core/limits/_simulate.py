"""`simulate`: what a rule does to a given traffic, replayed in memory on a simulated clock.

The rule runs in a `MemoryLimitStore` (the same code that decides in production for
``store = "memory"``) whose clock is the replay's, so an hour of traffic takes as
long as computing it. Requests arrive evenly at ``rate`` per second, in groups of
``burst`` at once (the same average rate, burstier traffic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from revoctl.core.errors import UsageError
from revoctl.core.limits.settings import RateLimitRule
from revoctl.core.limits.stores.memory import MemoryLimitStore

MAX_REQUESTS = 2_000_000
"""A bound on one replay (about two seconds of work)."""
MAX_POINTS = 120
"""Time steps in the series, at most."""


@dataclass(frozen=True)
class Simulation:
    """The replay's totals and, per time step, what was allowed and denied."""

    rule: str
    rate: float
    duration: float
    burst: int
    step: float
    allowed: int
    denied: int
    series: list[dict[str, Any]] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The CONTRACT's JSON: ``{"rule", "rate", "duration", "allowed", "denied", "series"}``."""
        return {
            "rule": self.rule,
            "rate": self.rate,
            "duration": self.duration,
            "burst": self.burst,
            "step": self.step,
            "allowed": self.allowed,
            "denied": self.denied,
            "series": self.series,
        }


def simulate(
    rule: RateLimitRule, rate: float, duration: float, *, burst: int = 1, step: float | None = None
) -> Simulation:
    """Replay ``duration`` seconds of ``rate`` requests per second (in groups of ``burst``)
    against ``rule``, one key, starting from a full key.

    :raises UsageError: a non-positive rate, duration, burst or step, or more than
        `MAX_REQUESTS` requests.
    """
    if not (rate > 0 and math.isfinite(rate)) or not (duration > 0 and math.isfinite(duration)):
        raise UsageError("--rate and --duration must be positive numbers")
    if burst < 1:
        raise UsageError("--burst must be at least 1")
    if rate * duration > MAX_REQUESTS:
        raise UsageError(
            f"{rate:g}/s for {duration:g}s is {rate * duration:.0f} requests; "
            f"a simulation replays at most {MAX_REQUESTS}"
        )
    step = step if step is not None else _default_step(duration)
    if not step > 0:
        raise UsageError("--step must be positive")
    points = math.ceil(duration / step)
    if points > MAX_POINTS * 10:
        raise UsageError(f"--step {step:g} gives {points} points; use a larger step")
    allowed = [0] * points
    denied = [0] * points
    now = 0.0
    store = MemoryLimitStore(clock=lambda: now)
    gap = burst / rate
    group = 0
    while (now := group * gap) < duration:
        slot = min(points - 1, int(now / step))
        for _ in range(burst):
            if store.apply_now(rule, "simulated", "check", 1).allowed:
                allowed[slot] += 1
            else:
                denied[slot] += 1
        group += 1
    series = [
        {"t": round(i * step, 6), "allowed": allowed[i], "denied": denied[i]} for i in range(points)
    ]
    return Simulation(rule.name, rate, duration, burst, step, sum(allowed), sum(denied), series)


def _default_step(duration: float) -> float:
    """A round step giving at most half of `MAX_POINTS` points: readable at a glance."""
    raw = duration / (MAX_POINTS / 2)
    for nice in (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if nice >= raw:
            return float(nice)
    return float(math.ceil(raw / 3600) * 3600)
