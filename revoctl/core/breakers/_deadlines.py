"""Per-call timeouts for one breaker: one timer for all its calls, not one per call.

`asyncio.timeout()` schedules and cancels a timer handle on every call (about 4 µs
here). A breaker's calls all share one ``timeout``, so their deadlines fall in the
order the calls began: the calls in flight sit in an insertion-ordered dict, and one
timer, set for the oldest deadline, cancels the calls that outlive it and re-arms for
the next. A call that finishes in time costs a dict insert and delete.

The cancelled call's task sees `TimeoutError`, exactly as with `asyncio.timeout()`: the
cancellation is ours only if nobody else cancelled the task meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

_DEADLINE, _TASK, _CANCELLING, _EXPIRED = range(4)


class Deadlines:
    """Runs awaitables under a fixed ``timeout`` (seconds, > 0) on the running loop."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: dict[int, list[Any]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._next_id = 0

    async def run(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``; past the timeout, cancel it and raise `TimeoutError`.

        :raises TimeoutError: the call outlived the timeout.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._adopt(loop)
        task = asyncio.current_task(loop)
        if task is None:  # not in a task: nothing to cancel, so no deadline to keep
            return await awaitable
        deadline = loop.time() + self.timeout
        entry: list[Any] = [deadline, task, task.cancelling(), False]
        key = self._next_id = self._next_id + 1
        self._inflight[key] = entry
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if entry[_EXPIRED] and task.uncancel() <= entry[_CANCELLING]:
                raise TimeoutError(f"no answer within {self.timeout:g}s") from None
            raise
        finally:
            del self._inflight[key]

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """A new event loop (a new ``asyncio.run``): the old one's timer is void."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._inflight.clear()
        self._loop = loop

    def _expire(self) -> None:
        """Cancel every call past its deadline; re-arm for the oldest one still running."""
        assert self._loop is not None
        self._timer = None
        now = self._loop.time()
        for entry in self._inflight.values():
            if entry[_DEADLINE] > now:
                self._timer = self._loop.call_at(entry[_DEADLINE], self._expire)
                return
            if not entry[_EXPIRED]:
                entry[_EXPIRED] = True
                entry[_TASK].cancel()
