"""`StoreCondition`: what the runtime's limiter knows of its store, and the answer it gives
when the store cannot decide.

The store is *up* until an operation fails (unreachable, past ``timeout_seconds``, not
migrated): then it is *down*, and ``failure_mode`` answers every decision. While it is
down one call per ``probe_interval_seconds`` is let through as the probe (the others
are answered at once, so an outage causes no reconnect storm); the first that succeeds
brings it back up.

A store whose pool had no free connection within ``pool_wait_seconds``
(`PoolExhaustedError`) is *busy*, not down: ``failure_mode`` answers that call alone,
the calls are counted and a warning says so at most once per `BUSY_LOG_SECONDS`, and
the next call goes to the store as usual. A busy pool is back-pressure, not an outage.

Every transition is logged here, once; the limiter only reports what happened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from revoctl.core.errors import PoolExhaustedError
from revoctl.core.limits.base import RateLimitResult
from revoctl.core.limits.settings import FailureMode, LimitsConfig, RateLimitRule

logger = logging.getLogger("revoctl.limits")

BUSY_LOG_SECONDS = 10.0
"""At most one warning in this interval about calls that found the store's pool busy."""


class StoreCondition:
    """Up, busy or down, with the counts health reports; ``clock`` is monotonic seconds."""

    def __init__(self, config: LimitsConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.down = False
        self.failures = 0
        """Operations that failed (the store counted down each time)."""
        self.busy_answers = 0
        """Calls answered by ``failure_mode`` because the pool was busy."""
        self._clock = clock
        self._last_error: str | None = None
        self._next_probe = 0.0
        self._probing = False
        self._busy_logged = 0
        self._next_busy_log = 0.0

    def refusal(self) -> str | None:
        """Why this call must not reach the store (down, not its turn to probe), or None:
        it may, and when the store is down it is the one probe in flight (`end_probe`)."""
        if not self.down:
            return None
        if self._probing or self._clock() < self._next_probe:
            return f"store unavailable ({self._last_error})"
        self._probing = True
        return None

    def end_probe(self) -> None:
        """The call let through as the probe has ended, whatever its outcome."""
        self._probing = False

    def failed(self, exc: BaseException) -> str:
        """An operation failed: the store is down (until a probe succeeds). Returns why."""
        self.failures += 1
        reason = describe_failure(exc, self.config.timeout_seconds)
        self._last_error = reason
        self._next_probe = self._clock() + self.config.probe_interval_seconds
        if not self.down:
            self.down = True
            logger.warning(
                "rate-limit store failing (%s); failure_mode %s answers until it is back",
                reason,
                self.config.failure_mode.value,
            )
        else:
            logger.info("rate-limit store still failing: %s", reason)
        return f"store unavailable ({reason})"

    def busy(self, exc: PoolExhaustedError) -> str:
        """No connection came free within the wait: this call only. Returns why."""
        self.busy_answers += 1
        now = self._clock()
        if now >= self._next_busy_log:
            self._next_busy_log = now + BUSY_LOG_SECONDS
            logger.warning(
                "rate-limit store busy: %s; failure_mode %s answered %d call(s) since the "
                "last such warning, the store is not treated as down",
                exc,
                self.config.failure_mode.value,
                self.busy_answers - self._busy_logged,
            )
            self._busy_logged = self.busy_answers
        return f"store busy ({exc})"

    def recovered(self) -> None:
        """An operation succeeded: the store is up again (when it was down)."""
        if self.down:
            self.down = False
            logger.warning("rate-limit store is back after %d failed operations", self.failures)

    def answer(self, rule: RateLimitRule, reason: str) -> RateLimitResult:
        """``failure_mode``'s answer for a check of ``rule`` the store could not decide."""
        limit = rule.capacity
        if self.config.failure_mode is FailureMode.OPEN:
            return RateLimitResult(True, limit, limit, None, 0.0, f"{reason}: admitted (open)")
        retry = self.config.probe_interval_seconds
        return RateLimitResult(False, 0, limit, retry, 0.0, f"{reason}: denied (closed)")


def describe_failure(exc: BaseException, timeout: float) -> str:
    """One line for a store failure, naming a timeout by its bound."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
