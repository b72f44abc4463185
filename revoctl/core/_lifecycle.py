"""The life cycle every service shares: `initialize()`, `close()`, or ``async with``."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncService:
    """A service opened by `initialize()` and released by `close()`; ``async with`` does both."""

    async def initialize(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
