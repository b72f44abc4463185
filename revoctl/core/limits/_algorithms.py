"""The three algorithms as pure functions of (state, now): no clock, no I/O.

The memory and SQL stores run these; the Lua scripts in ``lua/`` are their
line-for-line twins for Redis, and the tests hold all of them to the same numbers.
State is a short tuple of floats, constant in size per key:

* token bucket ``(tokens, ts)``: the level at the last write and when that was;
* sliding window ``(newest_slot, c0, c1, ..., cN)``: units counted in each of the
  last ``SLOTS + 1`` slots of ``window / SLOTS`` seconds, newest first;
* fixed window ``(window_index, count)``.

A clock that reads earlier than the stored state (another process, a replica) is
treated as the stored time: time never runs backwards into extra capacity.
"""

from __future__ import annotations

import math

from revoctl.core.limits.base import Op, RateLimitResult
from revoctl.core.limits.settings import RateLimitAlgorithm, RateLimitRule

State = tuple[float, ...]
Decision = tuple[State | None, RateLimitResult]
"""The state to store (None: unchanged) and the result."""

EPSILON = 1e-9
"""Slack for float sums: 0.1 + 0.2 tokens must still pay for 0.3."""
SLOTS = 10
"""Slots per sliding window. A check counts every slot that overlaps the last
``window_seconds``, so it never admits more than ``requests`` in any window; the
price is up to ``window_seconds / SLOTS`` of extra strictness."""


def too_heavy(weight: int, limit: int) -> str:
    return f"weight {weight} exceeds the limit {limit}: it can never be allowed"


class TokenBucket:
    """Starts full at ``capacity`` and refills at ``requests / window_seconds`` per second."""

    __slots__ = ("capacity", "rate")

    def __init__(self, rule: RateLimitRule) -> None:
        self.capacity = rule.capacity
        self.rate = rule.requests / rule.window_seconds

    def apply(self, state: State | None, now: float, op: Op, weight: int) -> Decision:
        capacity, rate = self.capacity, self.rate
        if state is None:
            tokens, last = float(capacity), now
        else:
            tokens, last = state[0], state[1]
            if now < last:
                now = last
            tokens = min(capacity, tokens + (now - last) * rate)
        new: State | None = None
        retry: float | None = None
        allowed, reason = True, None
        if op == "refund":
            tokens = min(capacity, tokens + weight)
            new = (tokens, now)
        elif weight > capacity:
            allowed, reason = False, too_heavy(weight, capacity)
        elif tokens + EPSILON >= weight:
            if op == "check":
                tokens = max(0.0, tokens - weight)
                new = (tokens, now)
        else:
            allowed, retry = False, (weight - tokens) / rate
        reset = (capacity - tokens) / rate if tokens < capacity - EPSILON else 0.0
        remaining = math.floor(tokens + EPSILON)
        return new, RateLimitResult(allowed, remaining, capacity, retry, reset, reason)


class SlidingWindow:
    """At most ``requests`` units in any window of ``window_seconds``, counted in slots."""

    __slots__ = ("limit", "slot")

    def __init__(self, rule: RateLimitRule) -> None:
        self.limit = rule.requests
        self.slot = rule.window_seconds / SLOTS

    def apply(self, state: State | None, now: float, op: Op, weight: int) -> Decision:
        limit, slot = self.limit, self.slot
        current = math.floor(now / slot)
        counts = [0] * (SLOTS + 1)  # counts[k]: units in slot current - k
        if state is not None:
            newest = int(state[0])
            if newest > current:
                current, now = newest, max(now, newest * slot)
            shift = current - newest
            for k in range(max(0, SLOTS + 1 - shift)):
                counts[k + shift] = int(state[1 + k])
        used = sum(counts)
        changed, allowed = False, True
        retry: float | None = None
        reason = None
        if op == "refund":
            left = weight
            for k in range(SLOTS + 1):  # newest first: the units most likely being settled
                back = min(left, counts[k])
                counts[k] -= back
                left -= back
            used -= weight - left
            changed = True
        elif weight > limit:
            allowed, reason = False, too_heavy(weight, limit)
        elif used + weight <= limit:
            if op == "check":
                counts[0] += weight
                used += weight
                changed = True
        else:
            allowed = False
            freed = 0
            for k in range(SLOTS, -1, -1):  # slot current - k leaves the count at this time
                freed += counts[k]
                if used - freed + weight <= limit:
                    retry = (current - k + SLOTS + 1) * slot - now
                    break
        newest_used = next((k for k in range(SLOTS + 1) if counts[k]), None)
        reset = 0.0 if newest_used is None else (current - newest_used + SLOTS + 1) * slot - now
        new = (float(current), *map(float, counts)) if changed else None
        return new, RateLimitResult(allowed, limit - used, limit, retry, reset, reason)


class FixedWindow:
    """At most ``requests`` units per window aligned to multiples of ``window_seconds``."""

    __slots__ = ("limit", "window")

    def __init__(self, rule: RateLimitRule) -> None:
        self.limit = rule.requests
        self.window = rule.window_seconds

    def apply(self, state: State | None, now: float, op: Op, weight: int) -> Decision:
        limit, window = self.limit, self.window
        current = math.floor(now / window)
        count = 0
        if state is not None:
            stored = int(state[0])
            if stored > current:
                current, now = stored, max(now, stored * window)
            if stored == current:
                count = int(state[1])
        changed, allowed = False, True
        retry: float | None = None
        reason = None
        ends_in = (current + 1) * window - now
        if op == "refund":
            count = max(0, count - weight)
            changed = True
        elif weight > limit:
            allowed, reason = False, too_heavy(weight, limit)
        elif count + weight <= limit:
            if op == "check":
                count += weight
                changed = True
        else:
            allowed, retry = False, ends_in
        new = (float(current), float(count)) if changed else None
        reset = ends_in if count else 0.0
        return new, RateLimitResult(allowed, limit - count, limit, retry, reset, reason)


Algorithm = TokenBucket | SlidingWindow | FixedWindow

_BY_NAME: dict[RateLimitAlgorithm, type[Algorithm]] = {
    RateLimitAlgorithm.TOKEN_BUCKET: TokenBucket,
    RateLimitAlgorithm.SLIDING_WINDOW: SlidingWindow,
    RateLimitAlgorithm.FIXED_WINDOW: FixedWindow,
}


def algorithm_for(rule: RateLimitRule) -> Algorithm:
    """The algorithm ``rule`` names, with the rule's numbers."""
    return _BY_NAME[rule.algorithm](rule)
