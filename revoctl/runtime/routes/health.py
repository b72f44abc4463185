"""``/health`` (what ``revoctl health -o json`` prints, plus the usage writer's buffer),
``/health/live``, ``/health/ready``.

None of them needs a key: probes and load balancers call them.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from revoctl.runtime.gateway import Gateway
from revoctl.runtime.usage import with_usage_buffer


async def health(request: Request) -> Response:
    """Every service's check, as the CLI reports it, with the usage writer's buffer under
    the database; 503 when unhealthy."""
    gateway = Gateway.of(request)
    report = with_usage_buffer(await gateway.services.health_check(), gateway.usage.stats())
    return JSONResponse(report, status_code=503 if report["status"] == "unhealthy" else 200)


async def live(request: Request) -> Response:
    """The process answers; nothing else is checked (a liveness probe must not restart a
    pod because its database is down)."""
    return JSONResponse({"status": "alive"})


async def ready(request: Request) -> Response:
    """Whether this instance should get traffic: started, keys loaded, database reachable."""
    verdict = Gateway.of(request).readiness()
    return JSONResponse(verdict, status_code=200 if verdict["ready"] else 503)
