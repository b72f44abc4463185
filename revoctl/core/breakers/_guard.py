"""`BreakerGuard`: a `CallGuard` (`revoctl.core._guard`) judged by one circuit breaker.

The composition fills the database layer's guard with the predefined ``database``
breaker and the Redis stores' with ``redis``. A guarded call goes through the breaker's
one admission (closed: nothing to do; open: refused; half-open: a trial, with a permit
from the fleet) and its outcome is counted like a protected call's, with two
differences: the clock starts at ``call.restart()`` (after the wait for a pooled
connection), and only the server's failures count (`server_failure`): a busy pool, a
constraint violation or the caller's own error are not the database's outage.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from revoctl.core._guard import GuardedCall, GuardOpenError, is_back_pressure
from revoctl.core.breakers._breaker import CircuitBreaker
from revoctl.core.breakers._states import Closed, HalfOpen
from revoctl.core.errors import BackendUnavailableError, CircuitOpenError

_SERVER_ERROR_NAMES = frozenset({"ConnectionError", "TimeoutError", "BusyLoadingError"})
"""redis-py's errors that say the server is unreachable or not answering (read by name:
this module does not import redis)."""


def server_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the server failed: unreachable, timed out, refused."""
    if not isinstance(exc, Exception) or is_back_pressure(exc):
        return False
    if isinstance(exc, (BackendUnavailableError, TimeoutError, OSError)):
        return True
    return any(
        cls.__module__.startswith("redis") and cls.__name__ in _SERVER_ERROR_NAMES
        for cls in type(exc).__mro__
    )


class _Timed:
    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def restart(self) -> None:
        self.started = time.perf_counter()


class BreakerGuard:
    """Judges calls with the breaker ``breaker()`` returns (looked up at the first call:
    the breakers may be built after the layer they guard)."""

    def __init__(
        self,
        breaker: Callable[[], CircuitBreaker],
        *,
        counts: Callable[[BaseException], bool] = server_failure,
    ) -> None:
        self._lookup = breaker
        self._breaker: CircuitBreaker | None = None
        self._counts = counts

    @property
    def breaker(self) -> CircuitBreaker:
        if self._breaker is None:
            self._breaker = self._lookup()
        return self._breaker

    @contextlib.asynccontextmanager
    async def guarded(self) -> AsyncIterator[GuardedCall]:
        """Admit (or raise `GuardOpenError`), then count the block's outcome.

        :raises GuardOpenError: the breaker is open; the block did not run.
        """
        breaker = self.breaker
        if breaker._unread:  # a new process: look at the fleet's record first
            await breaker._first_read(_nothing)
        state = breaker.state
        if type(state) is not Closed:
            try:
                state = await breaker._admit(sync=False)
            except CircuitOpenError as exc:
                raise GuardOpenError(
                    f"{breaker.name} unavailable: {exc}", retry_after=exc.retry_after
                ) from exc
        timed = _Timed()
        try:
            yield timed
        except BaseException as exc:
            elapsed = time.perf_counter() - timed.started
            if self._counts(exc):
                breaker._ended(state, elapsed, exc)
            else:
                state.ignored += 1
                if isinstance(state, HalfOpen) and state.fleet and breaker.fleet is not None:
                    breaker.fleet.report_trial(breaker.name, state.episode, None, "not counted")
            raise
        breaker._ended(state, time.perf_counter() - timed.started)

    def report(self) -> dict[str, Any] | None:
        """``{"breaker", "state", "reason"?, "retry_after"?}`` while the breaker refuses
        calls (open or an operator's trip), else None."""
        state = self.breaker.state
        if type(state) is Closed or isinstance(state, HalfOpen):
            return None
        out: dict[str, Any] = {"breaker": self.breaker.name, "state": state.name}
        reason = getattr(state, "reason", None)
        if reason:
            out["reason"] = reason
        retry = state.retry_after()
        if retry is not None:
            out["retry_after"] = round(retry, 3)
        return out


def _nothing() -> None:
    return None
