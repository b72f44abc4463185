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
            tokens = float(capacity)
        else:
            tokens, last = state
            if now < last:
                now = last
            tokens += (now - last) * rate
            if tokens > capacity:
                tokens = float(capacity)
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
                tokens = tokens - weight if tokens > weight else 0.0
                new = (tokens, now)
        else:
            allowed, retry = False, (weight - tokens) / rate
        reset = (capacity - tokens) / rate if tokens < capacity - EPSILON else 0.0
        return new, RateLimitResult(allowed, int(tokens + EPSILON), capacity, retry, reset, reason)


class SlidingWindow:
    """At most ``requests`` units in any window of ``window_seconds``, counted in slots."""

    __slots__ = ("limit", "slot")

    def __init__(self, rule: RateLimitRule) -> None:
        self.limit = rule.requests
        self.slot = rule.window_seconds / SLOTS

    def apply(self, state: State | None, now: float, op: Op, weight: int) -> Decision:
        limit, slot = self.limit, self.slot
        current = now // slot
        # counts[k]: units in slot current - k, for k = 0 .. SLOTS
        if state is None:
            counts = [0.0] * (SLOTS + 1)
        else:
            newest = state[0]
            if newest > current:
                current, now = newest, max(now, newest * slot)
            shift = int(current - newest)
            if shift == 0:
                counts = list(state[1:])
            elif shift > SLOTS:
                counts = [0.0] * (SLOTS + 1)
            else:
                counts = [0.0] * shift + list(state[1 : SLOTS + 2 - shift])
        used = sum(counts)
        changed, allowed = False, True
        retry: float | None = None
        reason = None
        if op == "refund":
            left: float = weight
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
            freed = 0.0
            for k in range(SLOTS, -1, -1):  # slot current - k leaves the count at this time
                freed += counts[k]
                if used - freed + weight <= limit:
                    retry = (current - k + SLOTS + 1) * slot - now
                    break
        reset = 0.0
        for k in range(SLOTS + 1):  # the newest slot in use is the last to leave
            if counts[k]:
                reset = (current - k + SLOTS + 1) * slot - now
                break
        new = (current, *counts) if changed else None
        return new, RateLimitResult(allowed, limit - int(used), limit, retry, reset, reason)


class FixedWindow:
    """At most ``requests`` units per window aligned to multiples of ``window_seconds``."""

    __slots__ = ("limit", "window")

    def __init__(self, rule: RateLimitRule) -> None:
        self.limit = rule.requests
        self.window = rule.window_seconds

    def apply(self, state: State | None, now: float, op: Op, weight: int) -> Decision:
        limit, window = self.limit, self.window
        current = now // window
        count = 0.0
        if state is not None:
            stored = state[0]
            if stored >= current:
                if stored > current:
                    current, now = stored, max(now, stored * window)
                count = state[1]
        new: State | None = None
        allowed = True
        retry: float | None = None
        reason = None
        ends_in = (current + 1) * window - now
        if op == "refund":
            count = max(0.0, count - weight)
            new = (current, count)
        elif weight > limit:
            allowed, reason = False, too_heavy(weight, limit)
        elif count + weight <= limit:
            if op == "check":
                count += weight
                new = (current, count)
        else:
            allowed, retry = False, ends_in
        return new, RateLimitResult(
            allowed, limit - int(count), limit, retry, ends_in if count else 0.0, reason
        )


Algorithm = TokenBucket | SlidingWindow | FixedWindow

_BY_NAME: dict[RateLimitAlgorithm, type[Algorithm]] = {
    RateLimitAlgorithm.TOKEN_BUCKET: TokenBucket,
    RateLimitAlgorithm.SLIDING_WINDOW: SlidingWindow,
    RateLimitAlgorithm.FIXED_WINDOW: FixedWindow,
}


def algorithm_for(rule: RateLimitRule) -> Algorithm:
    """The algorithm ``rule`` names, with the rule's numbers."""
    return _BY_NAME[rule.algorithm](rule)
