"""Pool statistics and slow-query detection, fed by engine and pool events."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.pool import Pool

logger = logging.getLogger("revoctl.db")

_QUERY_START = "revoctl.query_start"
STATEMENT_LOG_LIMIT = 2000
"""Characters of a slow statement that go into the log line."""
OPERATIONS = ("select", "insert", "update", "delete")
"""Statement kinds told apart for `DbObserver.statement`; any other is ``"other"``."""


class DbObserver(Protocol):
    """Told of each statement's time and each pool checkout's wait (the runtime's metrics
    fill it; core keeps no metrics library of its own)."""

    def statement(self, operation: str, seconds: float) -> None: ...

    def checkout(self, seconds: float, *, timed_out: bool) -> None: ...


def operation_of(statement: str) -> str:
    """``statement``'s kind: its first word when one of `OPERATIONS`, else ``"other"``."""
    words = statement.lstrip(" \t\r\n(").split(None, 1)
    word = words[0].lower() if words else ""
    return word if word in OPERATIONS else "other"


@dataclass
class PoolStats:
    """Counters for one engine's pool, kept by listeners on its sync engine.

    Checkout waits are timed by `DatabaseManager` around each acquisition (pool
    events fire only once a connection is in hand, so they cannot see the wait):
    they include queueing for a free slot, opening a new connection when the pool
    grows, and the pre-ping.
    """

    pool_size: int
    max_overflow: int
    checked_out: int = 0
    checkouts: int = 0
    checkins: int = 0
    connects: int = 0
    invalidations: int = 0
    checkout_timeouts: int = 0
    slow_queries: int = 0
    wait_count: int = 0
    wait_total_s: float = 0.0
    wait_max_s: float = 0.0
    observer: DbObserver | None = field(default=None, repr=False)
    """Told of statement times and checkout waits when set (the runtime's metrics)."""

    def attach(self, engine: Engine, slow_query_ms: float) -> None:
        """Listen to ``engine``'s pool and to its cursor (statement times for the `observer`,
        slow queries when ``slow_query_ms`` > 0)."""
        from sqlalchemy import event

        event.listen(engine, "connect", self._on_connect)
        event.listen(engine, "checkout", self._on_checkout)
        event.listen(engine, "checkin", self._on_checkin)
        event.listen(engine, "invalidate", self._on_invalidate)
        event.listen(engine, "soft_invalidate", self._on_invalidate)
        SlowQueryMonitor(self, slow_query_ms).attach(engine)

    def record_wait(self, seconds: float, *, timed_out: bool = False) -> None:
        self.wait_count += 1
        self.wait_total_s += seconds
        self.wait_max_s = max(self.wait_max_s, seconds)
        if timed_out:
            self.checkout_timeouts += 1
        if self.observer is not None:
            self.observer.checkout(seconds, timed_out=timed_out)

    def snapshot(self, pool: Pool) -> dict[str, Any]:
        """The counters plus the pool's own gauges, JSON-ready."""
        from sqlalchemy.pool import QueuePool

        queue = pool if isinstance(pool, QueuePool) else None
        avg = self.wait_total_s / self.wait_count if self.wait_count else 0.0
        return {
            "size": queue.size() if queue else None,
            "checked_out": self.checked_out,
            "checked_in": queue.checkedin() if queue else None,
            # overflow() starts at -pool_size: it counts connections beyond the pool's size.
            "overflow": max(queue.overflow(), 0) if queue else 0,
            "saturated": queue is not None
            and self.checked_out >= self.pool_size + self.max_overflow,
            "connects": self.connects,
            "checkouts": self.checkouts,
            "checkins": self.checkins,
            "invalidations": self.invalidations,
            "checkout_timeouts": self.checkout_timeouts,
            "checkout_wait_avg_ms": round(avg * 1000, 3),
            "checkout_wait_max_ms": round(self.wait_max_s * 1000, 3),
            "slow_queries": self.slow_queries,
        }

    def _on_connect(self, _dbapi_conn: Any, _record: Any) -> None:
        self.connects += 1

    def _on_checkout(self, _dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        self.checkouts += 1
        self.checked_out += 1

    def _on_checkin(self, _dbapi_conn: Any, _record: Any) -> None:
        self.checkins += 1
        self.checked_out -= 1

    def _on_invalidate(self, _dbapi_conn: Any, _record: Any, _exc: Any) -> None:
        self.invalidations += 1


@dataclass
class SlowQueryMonitor:
    """Times each statement for the stats' `DbObserver`, and logs a warning for each one
    slower than ``threshold_ms`` (0: none); never its parameters."""

    stats: PoolStats
    threshold_ms: float

    def attach(self, engine: Engine) -> None:
        from sqlalchemy import event

        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Connection, *_args: Any) -> None:
        conn.info[_QUERY_START] = time.perf_counter()

    def _after(self, conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        started = conn.info.pop(_QUERY_START, None)
        if started is None:
            return
        elapsed = time.perf_counter() - started
        observer = self.stats.observer
        if observer is not None:
            observer.statement(operation_of(statement), elapsed)
        elapsed_ms = elapsed * 1000
        if self.threshold_ms <= 0 or elapsed_ms < self.threshold_ms:
            return
        self.stats.slow_queries += 1
        text = " ".join(statement.split())[:STATEMENT_LOG_LIMIT]
        logger.warning(
            "slow query (%.1f ms >= %g ms): %s [parameters redacted]",
            elapsed_ms,
            self.threshold_ms,
            text,
            extra={"duration_ms": round(elapsed_ms, 3), "statement": text},
        )
