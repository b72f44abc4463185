"""``/health`` (what ``revoctl health -o json`` prints), ``/health/live``, ``/health/ready``.

None of them needs a key: probes and load balancers call them.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from revoctl.runtime.gateway import Gateway


async def health(request: Request) -> Response:
    """Every service's check, as the CLI reports it; 503 when unhealthy."""
    report = await Gateway.of(request).services.health_check()
    return JSONResponse(report, status_code=503 if report["status"] == "unhealthy" else 200)


async def live(request: Request) -> Response:
    """The process answers; nothing else is checked (a liveness probe must not restart a
    pod because its database is down)."""
    return JSONResponse({"status": "alive"})


async def ready(request: Request) -> Response:
    """Whether this instance should get traffic: started, keys loaded, database reachable."""
    verdict = await Gateway.of(request).readiness()
    return JSONResponse(verdict, status_code=200 if verdict["ready"] else 503)
