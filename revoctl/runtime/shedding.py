"""Load shedding: beyond ``[gateway] max_in_flight`` requests in flight, answer 503 at once.

A queue in front of a saturated gateway only makes every client wait until it times out;
a fast 503 with ``Retry-After`` lets a client or its load balancer go elsewhere or come
back. `LoadShedder` is the outermost middleware, plain ASGI (like
`revoctl.runtime.middleware`): a shed request never reaches the body read, the key check,
the limiter or a provider, and costs one admission (`revoctl.runtime.in_flight`) and two
fixed ASGI messages.

Only the work routes count and are shed: ``/v1/*``, ``/generate`` and ``/admin/*``. The
health, metrics and openapi routes pass by uncounted, so they keep answering under
overload. A request counts from its arrival until the app is done with it: a stream until
its last byte is sent (and its settlement after).

A shed request writes no ``request_logs`` row: nothing about it is known (neither its key
nor its model: neither was read) and under a flood its rows would crowd the usage buffer
out of the rows of the requests that were served. ``revoctl_requests_shed_total`` counts
them, and a warning says so: at the first, then at most once every `SUMMARY_SECONDS` with
the count since, never a line per shed request.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from revoctl.runtime.in_flight import InFlight
    from revoctl.runtime.metrics import GatewayMetrics

logger = logging.getLogger("revoctl.gateway")

SHED_RETRY_SECONDS = 1
"""``Retry-After`` of a shed request: the requests in flight end within seconds."""
SUMMARY_SECONDS = 1.0
"""The most often a worker logs how many requests it shed."""
WORK_PREFIXES = ("/v1/", "/admin/")
WORK_PATHS = frozenset({"/generate"})


def is_work(path: str) -> bool:
    """Whether ``path`` is one of the routes that are counted and shed."""
    return path.startswith(WORK_PREFIXES) or path in WORK_PATHS


class ShedReport:
    """The warnings of shedding: the first shed request at once, then the count of those
    shed since, at most once every `SUMMARY_SECONDS`."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.pending = 0
        self._last = self._since = -math.inf  # no line yet

    def shed(self) -> None:
        """One more request shed."""
        self.pending += 1
        self.flush()

    def flush(self) -> None:
        """Log what is pending, unless a line went out less than `SUMMARY_SECONDS` ago."""
        now = time.monotonic()
        if not self.pending or now - self._last < SUMMARY_SECONDS:
            return
        if now - self._last >= 2 * SUMMARY_SECONDS and self.pending == 1:
            logger.warning(
                "overloaded: %d requests in flight on this instance (gateway.max_in_flight): "
                "shedding new ones with 503 and Retry-After",
                self.cap,
            )
        else:
            logger.warning(
                "overloaded: shed %d requests in the last %.1fs with 503 (gateway.max_in_flight "
                "= %d in flight on this instance)",
                self.pending,
                now - self._since,
                self.cap,
            )
        self.pending = 0
        self._last = self._since = now


class LoadShedder:
    """Admits a work route's request while the instance holds fewer than its cap, and
    answers the others 503 ``overloaded`` with ``Retry-After`` at once."""

    def __init__(self, app: ASGIApp, in_flight: InFlight) -> None:
        self.app = app
        self.in_flight = in_flight
        self.report = ShedReport(in_flight.cap)
        message = (
            f"the gateway has {in_flight.cap} requests in flight, its limit "
            f"(gateway.max_in_flight): retry in {SHED_RETRY_SECONDS}s"
        )
        body = {"error": {"message": message, "type": "server_error", "code": "overloaded"}}
        self._body = json.dumps(body).encode()
        self._start = {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self._body)).encode()),
                (b"retry-after", str(SHED_RETRY_SECONDS).encode()),
            ],
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_work(scope["path"]):
            await self.app(scope, receive, send)
            return
        metrics = _metrics(scope)
        if not self.in_flight.acquire():
            self.report.shed()
            if metrics is not None:
                metrics.shed.inc()
            await send(self._start)
            await send({"type": "http.response.body", "body": self._body})
            return
        if metrics is not None:
            metrics.in_flight.set(self.in_flight.held())
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight.release()
            if metrics is not None:
                metrics.in_flight.set(self.in_flight.held())
            if self.report.pending:
                self.report.flush()


def _metrics(scope: Scope) -> GatewayMetrics | None:
    """The gateway's metrics (the lifespan's state); None before it started."""
    gateway: Any = scope.get("state", {}).get("gateway")
    return gateway.metrics if gateway is not None else None
