"""The database layer's side of the guard protocol (`revoctl.core._guard`): the pooled
connection under the guard, and the guard's word in the health report.

The guard admits the call before the pool is asked (a refused call waits for nothing and
sends nothing), its clock starts once a connection is checked out (the wait for a free
one is back-pressure, not the server's work), and it counts the block's outcome.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

from revoctl.core._guard import CallGuard, effective
from revoctl.core.redaction import redact

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection


class Pooled(Protocol):
    """What the guard needs of `DatabaseManager` (named here, so the two modules do not
    import each other)."""

    guard: CallGuard

    async def initialize(self) -> None: ...

    async def _acquire(self, pool_wait: float | None = None) -> AsyncConnection: ...

    def _translate_errors(
        self, attempts: int | None = None, only: type[Exception] = Exception
    ) -> contextlib.AbstractContextManager[None]: ...


@contextlib.asynccontextmanager
async def guarded_connection(db: Pooled, pool_wait: float | None) -> AsyncIterator[AsyncConnection]:
    """`DatabaseManager.connection`'s body: see there."""
    from sqlalchemy.exc import SQLAlchemyError

    await db.initialize()
    async with effective(db.guard).guarded() as call:
        with db._translate_errors():
            conn = await db._acquire(pool_wait)
        call.restart()
        try:
            # Only the driver's errors: an OSError of the caller's own is not an outage.
            with db._translate_errors(attempts=1, only=SQLAlchemyError):
                yield conn
        finally:
            await conn.close()


def with_guard(report: dict[str, Any], guard: CallGuard) -> dict[str, Any]:
    """The health ``report`` with the guard's state while it refuses calls: at least
    degraded, with the reason (the server may answer, but revoctl does not use it)."""
    refusing = guard.report()
    if refusing is None:
        return report
    breaker, state = refusing["breaker"], refusing["state"]
    reason = f"circuit breaker {breaker!r} is {state}: revoctl does not use the database"
    if refusing.get("reason"):  # a failure's text may name a URL: redacted like the errors
        refusing = {**refusing, "reason": redact(refusing["reason"])}
        reason += f" ({refusing['reason']})"
    out = {**report, "guard": refusing}
    if out["status"] == "healthy":
        out["status"] = "degraded"
    out["reason"] = "; ".join(filter(None, [reason, report.get("reason")]))
    return out
