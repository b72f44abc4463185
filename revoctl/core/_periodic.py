"""One background loop for every "do this every N seconds" in revoctl.

The gateway's reports, the key ring's refresh, the breakers' sync and the batch
writer's flush all run ``work`` on a period, some woken early. A failure is logged
once per run of failures (not every period during an outage) and the loop carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from revoctl.core.errors import first_line

logger = logging.getLogger("revoctl")


async def every(
    seconds: float | Callable[[], float],
    work: Callable[[], Awaitable[object]],
    *,
    what: str,
    now: bool = True,
    wake: asyncio.Event | None = None,
) -> None:
    """Run ``work`` (at once when ``now``), then every ``seconds`` or when ``wake`` is set.

    ``seconds`` may be a callable, read before each wait (a back-off). Runs until
    cancelled; an exception from ``work`` is logged (the first of a run of failures,
    and the recovery) and the loop goes on.
    """
    failing = False
    if not now:
        await _wait(seconds, wake)
    while True:
        try:
            await work()
        except Exception as exc:  # background work reports and carries on
            if not failing:
                logger.warning("%s failed: %s: %s", what, type(exc).__name__, first_line(exc))
            failing = True
        else:
            if failing:
                logger.warning("%s works again", what)
            failing = False
        await _wait(seconds, wake)


async def _wait(seconds: float | Callable[[], float], wake: asyncio.Event | None) -> None:
    delay = seconds() if callable(seconds) else seconds
    if wake is None:
        await asyncio.sleep(delay)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await wake.wait()
    wake.clear()
