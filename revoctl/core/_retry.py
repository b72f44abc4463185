"""Exponential backoff with jitter, for operations that are safe to run again.

Shared by every back end that retries: the database, Redis, the LLM providers. The
sleep and the random source are injectable, so tests run the schedule without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

logger = logging.getLogger("revoctl.retry")


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``retries`` more attempts after the first, backing off between them.

    The delay before retry *n* (1-based) is drawn uniformly from ``[cap / 2, cap]``
    where ``cap = min(max_delay, base_delay * 2 ** (n - 1))``: exponential growth,
    a ceiling, and "equal jitter" so that processes retrying together spread out
    without ever retrying immediately.
    """

    retries: int
    base_delay: float = 0.1
    max_delay: float = 2.0
    random: Callable[[], float] = field(default=random.random, repr=False)
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        cap = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return cap / 2 + self.random() * cap / 2

    def max_total_delay(self) -> float:
        """The longest the backoff alone can add up to over every retry."""
        return sum(min(self.max_delay, self.base_delay * 2.0**i) for i in range(self.retries))

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        retry_if: Callable[[BaseException], bool],
        what: str,
    ) -> T:
        """Await ``fn()``; when it raises an error ``retry_if`` accepts, back off and call again.

        The last error propagates unchanged once the retries are spent.
        """
        retry = 0
        while True:
            try:
                return await fn()
            except Exception as exc:
                if retry >= self.retries or not retry_if(exc):
                    raise
                retry += 1
                delay = self.delay(retry)
                logger.info(
                    "%s failed (%s); retry %d of %d in %.2fs",
                    what,
                    type(exc).__name__,
                    retry,
                    self.retries,
                    delay,
                )
                await self.sleep(delay)
