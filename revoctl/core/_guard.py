"""The guard protocol: how the database layer and the Redis stores let a circuit breaker
judge their calls without importing the breakers (they sit below them).

A layer holds a `CallGuard` (`NO_GUARD` by default: nothing is judged) and runs each call
to its server as ``async with guard.guarded() as call:``. The guard refuses the call at
entry (`GuardOpenError`, a `BackendUnavailableError`: the layer's usual "unavailable"
answer) or admits it and counts its outcome at exit. ``call.restart()`` starts the clock
where the server's work starts, so the wait for a pooled connection before it is not
timed; an error that is back-pressure (`is_back_pressure`: a pool that stayed busy) is
never counted as the server's failure.

The composition (`revoctl.core.services`) fills the guards with the predefined
``database`` and ``redis`` breakers. The breakers' own store traffic runs inside
`unguarded()`: a tripped ``database`` breaker must not cut a process off from the store
that carries the later reset.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from typing import Any, Protocol

from revoctl.core.errors import BackendUnavailableError, PoolExhaustedError


class GuardedCall(Protocol):
    """One admitted call."""

    def restart(self) -> None:
        """Time the call from here: what came before was a wait, not the server's work."""


class CallGuard(Protocol):
    """Judges a layer's calls to its server."""

    def guarded(self) -> contextlib.AbstractAsyncContextManager[GuardedCall]:
        """Admit a call (or raise `GuardOpenError`) and count its outcome at exit."""
        ...

    def report(self) -> dict[str, Any] | None:
        """For the health document: the guard's state when it refuses calls, else None."""
        ...


class GuardOpenError(BackendUnavailableError):
    """The guard refuses the call: its breaker is open (nothing was sent)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Untimed:
    def restart(self) -> None:
        pass


_UNTIMED = _Untimed()


class NoGuard:
    """The default guard: every call goes through and nothing is counted."""

    @contextlib.asynccontextmanager
    async def guarded(self) -> AsyncIterator[GuardedCall]:
        yield _UNTIMED

    def report(self) -> dict[str, Any] | None:
        return None


NO_GUARD: CallGuard = NoGuard()

_BYPASS: ContextVar[bool] = ContextVar("revoctl_guard_bypass", default=False)


@contextlib.contextmanager
def unguarded() -> Iterator[None]:
    """Calls made inside are never judged by a guard (the breakers' own store traffic)."""
    token = _BYPASS.set(True)
    try:
        yield
    finally:
        _BYPASS.reset(token)


def effective(guard: CallGuard) -> CallGuard:
    """``guard``, or `NO_GUARD` inside `unguarded()`."""
    return NO_GUARD if _BYPASS.get() else guard


def is_back_pressure(exc: BaseException) -> bool:
    """A busy pool: the caller waited for a connection, the server did not fail."""
    return isinstance(exc, PoolExhaustedError)
