"""`CircuitBreaker`: protected calls, per-call timeouts, slow calls, classification, fallbacks.

Every protected call, async or sync, takes one path (`CircuitBreaker.call`): admit,
call, await, count. The hot path, a call while closed, stays in this process: it reads
the current state, times the call, awaits it and counts the outcome. No store round
trip, no lock, no task: ten concurrent calls run concurrently. With ``timeout = 0``
there is no deadline machinery at all; with a timeout, one timer serves every call
(`Deadlines`).

Which errors count is the breaker's ``is_failure`` predicate: by default every
exception, except an HTTP answer 4xx other than 408 and 429 (the caller's fault,
not the provider's), recognised on the exception's ``status_code``, ``status`` or
``response.status_code``. Cancellation never counts.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
import types
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn, ParamSpec, TypeVar, cast, overload

from revoctl.core.breakers._deadlines import Deadlines
from revoctl.core.breakers._machine import StateMachine
from revoctl.core.breakers._states import Closed, HalfOpen, State
from revoctl.core.breakers.base import FleetLink
from revoctl.core.breakers.settings import CircuitBreakerConfig
from revoctl.core.errors import CircuitOpenError, first_line
from revoctl.core.tracing import span

P = ParamSpec("P")
T = TypeVar("T")

FailurePredicate = Callable[[BaseException], bool]
"""Whether an error a protected call raised counts against the breaker."""

_CALLER_FAULTS = range(400, 500)
_NOT_CALLER_FAULTS = frozenset({408, 429})
_coroutine = types.CoroutineType
_perf = time.perf_counter


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an error carries (httpx, the OpenAI and Anthropic SDKs, aiohttp)."""
    for holder in (exc, getattr(exc, "response", None)):
        for attribute in ("status_code", "status"):
            value = getattr(holder, attribute, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def default_is_failure(exc: BaseException) -> bool:
    """Every error counts, except an HTTP 4xx other than 408 (timeout) and 429 (rate
    limited): a bad request is the caller's fault, not a sign the provider is down."""
    status = http_status(exc)
    return status is None or status not in _CALLER_FAULTS or status in _NOT_CALLER_FAULTS


def _describe(exc: BaseException) -> str:
    """``Type: first line`` of an error (at most 200 characters), or its type alone."""
    if not str(exc).strip():
        return type(exc).__name__
    return f"{type(exc).__name__}: {first_line(exc)}"[:200]


class _Unawaited:
    """A synchronous function, as `CircuitBreaker.call_sync` hands it to `CircuitBreaker.call`:
    it keeps the function's result (so the call path never awaits it) and tells the path
    not to wait on the fleet for it (no first read, no trial permit)."""

    __slots__ = ("fn", "result")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.result: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> _Unawaited:
        self.result = self.fn(*args, **kwargs)
        return self


def _run_unsuspended(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run a coroutine that never suspends (a synchronous call's path) to its end."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("a synchronous call under a breaker awaited")


class CircuitBreaker(StateMachine):
    """A circuit breaker for one dependency, e.g. ``openai_api``.

    ``await breaker.call(fn, *args, **kwargs)`` calls ``fn`` (async, or sync: an
    awaitable result is awaited) unless the breaker is open, and raises
    `CircuitOpenError` without calling it when it is. ``call_with_fallback`` answers
    with ``fallback(*args, **kwargs)`` instead, also when the call fails in a way that
    counts. ``@breaker`` protects a function (sync or async).

    ``is_failure`` classifies errors (see `default_is_failure`); ``fleet`` links it to the
    fleet's shared state (None: it decides alone); ``clock`` is for tests.
    """

    def __init__(
        self,
        config: CircuitBreakerConfig,
        *,
        is_failure: FailurePredicate = default_is_failure,
        fallback: Callable[..., Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        fleet: FleetLink | None = None,
    ) -> None:
        super().__init__(config, clock=clock, fleet=fleet)
        self.is_failure = is_failure
        self.fallback = fallback
        self._unread = fleet is not None
        """Whether this breaker has not looked at the fleet yet: its first call waits for it."""
        self._slow = config.slow_call_seconds or math.inf
        self._deadlines = Deadlines(config.timeout) if config.timeout else None

    # ------------------------------------------------------------------ calls

    async def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """`_call`, in a ``breaker.call`` span (the breaker, the state the call found)."""
        with span("breaker.call", breaker=self.name, state=self.state.name):
            return await self._call(fn, *args, **kwargs)

    async def _call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, awaited when it returns an awaitable, unless the breaker
        refuses it.

        The one path of every protected call (`call_sync` drives it too): admit, call,
        await, count. A call while closed is the hot path: no store round trip, no lock,
        no task, and its success counted inline.

        :raises CircuitOpenError: the breaker is open; ``fn`` was not called.
        :raises TimeoutError: the call outlived ``timeout`` and was cancelled.
        """
        if self._unread:  # a new process: look at the fleet first
            await self._first_read(fn)
        state = self.state
        closed = state if type(state) is Closed else None
        if closed is None:
            state = await self._admit(sync=type(fn) is _Unawaited)
        start = _perf()
        try:
            result = fn(*args, **kwargs)
            if type(result) is _coroutine or inspect.isawaitable(result):
                deadlines = self._deadlines
                result = await (result if deadlines is None else deadlines.run(result))
        except BaseException as exc:
            self._ended(state, _perf() - start, exc)
            raise
        if closed is not None and _perf() - start < self._slow:
            closed.calls += 1  # Closed.record_success(), inlined
            closed.consecutive = 0
        else:
            self._ended(state, _perf() - start)
        return result

    async def call_with_fallback(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Like `call`, but the breaker's ``fallback`` answers (with the same arguments)
        when the breaker refuses the call or the call fails in a way that counts.

        :raises CircuitOpenError: refused, and no fallback is set.
        """
        try:
            return await self.call(fn, *args, **kwargs)
        except CircuitOpenError:
            if self.fallback is None:
                raise
        except Exception as exc:
            if self.fallback is None or not self.is_failure(exc):
                raise
        result = self.fallback(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    def call_sync(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """A synchronous call under the breaker, for synchronous code (no timeout: a sync
        call cannot be interrupted; a slow one is counted). Trial permits from the fleet
        need the event loop, so a shared half-open breaker refuses sync calls.

        :raises CircuitOpenError: the breaker is open; ``fn`` was not called.
        """
        unawaited = _Unawaited(fn)
        _run_unsuspended(self.call(unawaited, *args, **kwargs))
        return cast("T", unawaited.result)

    @overload
    def __call__(self, func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]: ...

    @overload
    def __call__(self, func: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, func: Callable[P, Any]) -> Callable[P, Any]:
        """Decorator form: ``@breaker`` protects ``func`` (sync functions stay sync)."""
        return self.protect(func)

    def protect(self, func: Callable[P, Any], *, fallback: bool = False) -> Callable[P, Any]:
        """``func`` under this breaker; with ``fallback``, via `call_with_fallback`."""
        if inspect.iscoroutinefunction(func):
            runner = self.call_with_fallback if fallback else self.call

            @functools.wraps(func)
            async def protected(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await runner(func, *args, **kwargs)

            return protected

        @functools.wraps(func)
        def protected_sync(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                return self.call_sync(func, *args, **kwargs)
            except Exception as exc:
                if not fallback or self.fallback is None:
                    raise
                if not isinstance(exc, CircuitOpenError) and not self.is_failure(exc):
                    raise
                return self.fallback(*args, **kwargs)

        return protected_sync

    # ------------------------------------------------------------------ off the hot path

    async def _first_read(self, fn: Callable[..., Any]) -> None:
        """Wait for the fleet's state to be read once (not for a synchronous call)."""
        if type(fn) is _Unawaited:
            return
        if self.fleet is not None:
            await self.fleet.first_read()
        self._unread = False

    async def _admit(self, sync: bool) -> State:
        """A call while not closed: admitted as a trial call (with a permit from the
        fleet's lease while shared; never for a ``sync`` call), or refused. Returns the
        state that admitted it (closed, when an operator's trip ran out meanwhile)."""
        admitted = self.state.allow()
        state = self.state
        if not admitted and not (
            not sync and isinstance(state, HalfOpen) and state.fleet and await self._permit(state)
        ):
            self._reject(self.state)
        return state

    def _ended(self, state: State, elapsed: float, exc: BaseException | None = None) -> None:
        """Count a call's outcome; a trial call's is reported to the fleet (or, when it did
        not count, its permit given back)."""
        success: bool | None
        if exc is not None:
            success = False if self._failed(state, exc, elapsed) else None
        elif elapsed < self._slow:
            state.record_success()
            success = True
        else:
            success = not self._slow_success(state)
        if isinstance(state, HalfOpen) and state.fleet and self.fleet is not None:
            reason = f"trial call failed: {_describe(exc)}" if exc is not None else "trial call"
            self.fleet.report_trial(self.name, state.episode, success, reason)

    async def _permit(self, state: HalfOpen) -> bool:
        """Ask the fleet's lease for a trial permit; without a store, run trials alone."""
        if not state.may_ask():
            return False
        fleet = self.fleet
        granted = await fleet.acquire_trial(self.name) if fleet is not None else None
        if granted is None:  # the store is unreachable: this process decides alone
            state.go_local()
        elif granted and state is self.state:
            state.permits += 1
        return state is self.state and state.allow()

    def _reject(self, state: State) -> NoReturn:
        state.rejections += 1
        reason = getattr(state, "reason", None)
        raise CircuitOpenError(
            self.name, state.name, retry_after=state.retry_after(), reason=reason
        )

    def _failed(self, state: State, exc: BaseException, elapsed: float) -> bool:
        """Count an error; returns whether it counted as a failure."""
        if not isinstance(exc, Exception):  # cancelled, interrupted: not the callee's fault
            state.ignored += 1
            return False
        deadlines = self._deadlines
        if isinstance(exc, TimeoutError) and deadlines and elapsed >= deadlines.timeout:
            state.timeouts += 1
        if elapsed >= self._slow:
            state.slow_calls += 1
        if not self.is_failure(exc):
            state.ignored += 1
            return False
        state.record_failure(_describe(exc))
        return True

    def _slow_success(self, state: State) -> bool:
        """Count a slow call that succeeded; returns whether it counted as a failure."""
        state.slow_calls += 1
        if self.config.slow_call_is_failure:
            state.record_failure(f"slow call (over {self.config.slow_call_seconds:g}s)")
            return True
        state.record_success()
        return False

    def retry_after(self) -> float | None:
        """Seconds until the breaker may let a call through (0 when closed)."""
        return self.state.retry_after()

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name} {self.state.name}>"
