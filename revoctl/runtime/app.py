"""The gateway as an ASGI application, built from the same configuration as the CLI.

`create_app()` with no arguments resolves the configuration exactly as ``revoctl`` does
(``REVOCTL_CONFIG``, ``./revoctl.toml``, the profile, the environment), which is how
each uvicorn worker of ``revoctl serve --workers N`` builds its own.

A route raises `GatewayError` for every refusal; `refused`, registered with Starlette's
``exception_handlers``, renders it once. Starlette's own refusals (404 for an unknown
path, 405 for a wrong method) and an unexpected error (500, its traceback logged) get the
same JSON shape; a client that leaves before its body arrived is logged at debug level
and recorded as 499 (no one is there to read an answer), never as a 500.

Its shutdown (the lifespan's end) comes after uvicorn has let the requests in flight
end: the usage flush gets what ``[gateway] drain_seconds`` keeps for the close
(`GatewayConfig.close_seconds`), then every service closes within its own bounds. It is
not cut from in here: cancelling a database write a second time, while SQLAlchemy is
closing the connection the first cancellation broke, leaves aiosqlite's close waiting
for good (seen in 2 of 25 runs under load), and the process could then never exit. The
supervisor of ``--workers`` enforces the bound from outside (`revoctl.runtime.server`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from revoctl.config import LoadedConfig, load_config
from revoctl.core import tracing
from revoctl.core._process import Role
from revoctl.core.logs import configure_logging
from revoctl.core.services import open_services
from revoctl.runtime.client_address import ClientAddress
from revoctl.runtime.errors import GatewayError
from revoctl.runtime.gateway import Gateway
from revoctl.runtime.in_flight import in_flight_of_this_process
from revoctl.runtime.metrics import GatewayMetrics, mark_worker_gone
from revoctl.runtime.middleware import AccessLog
from revoctl.runtime.routes import admin, status
from revoctl.runtime.routes.chat import chat_completions
from revoctl.runtime.routes.embeddings import embeddings
from revoctl.runtime.routes.generate import generate
from revoctl.runtime.routes.health import health, live, ready
from revoctl.runtime.routes.metrics import metrics
from revoctl.runtime.routes.models import list_models
from revoctl.runtime.routes.openapi import openapi
from revoctl.runtime.shedding import LoadShedder
from revoctl.runtime.tracing import ServerSpans

logger = logging.getLogger("revoctl.gateway")

CLIENT_CLOSED_REQUEST = 499
"""The status recorded for a request whose client left before it could be answered."""


def create_app(
    config: LoadedConfig | str | Path | None = None, profile: str | None = None
) -> Starlette:
    """The gateway; services open when the server starts and close when it stops.

    :raises ConfigError: the configuration is invalid.
    """
    loaded = config if isinstance(config, LoadedConfig) else load_config(config, profile)
    configure_logging(loaded.settings.logging.level, loaded.settings.logging.format)
    logging.getLogger("revoctl.access").setLevel(logging.INFO)

    close_seconds = loaded.settings.gateway.close_seconds()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        async with open_services(loaded, role=Role.RUNTIME) as services:
            gateway = Gateway(services, GatewayMetrics())
            await gateway.start()
            # What start-up built lives as long as the process: keep it out of the
            # collector's full passes (measured: a 50 ms pause every 10 s at 200 req/s).
            gc.freeze()
            try:
                yield {"gateway": gateway}
            finally:
                await gateway.stop(flush_seconds=close_seconds)
                mark_worker_gone()
                tracing.shutdown(close_seconds)  # the spans still buffered, sent

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/generate", generate, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *admin.ROUTES,
        *status.ROUTES,
    ]
    trusted = loaded.settings.gateway.trusted_networks()
    behind_proxies = [Middleware(ClientAddress, trusted=trusted)] if trusted else []
    # Outermost: a shed request costs nothing of what the others do (revoctl.runtime.shedding).
    in_flight = in_flight_of_this_process(loaded.settings.gateway.in_flight_cap(workers=1))
    shedding = Middleware(LoadShedder, in_flight=in_flight)
    traced = [Middleware(ServerSpans)] if tracing.configure(loaded.settings.tracing) else []
    return Starlette(
        routes=routes,
        middleware=[shedding, *traced, *behind_proxies, Middleware(AccessLog)],
        exception_handlers={
            GatewayError: refused,
            HTTPException: not_routed,
            ClientDisconnect: client_left,
            Exception: failed,
        },
        lifespan=lifespan,
    )


async def refused(request: Request, exc: Exception) -> Response:
    """Every `GatewayError` a route raises, rendered once as OpenAI's error object, with the
    caller's rate-limit headers; its charge given back and its row written (`Gateway.refuse`)."""
    assert isinstance(exc, GatewayError)  # the one class this handler is registered for
    headers = await Gateway.of(request).refuse(request, exc)
    return JSONResponse(exc.body(), status_code=exc.status, headers=dict(headers))


async def not_routed(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (404 unknown path, 405 wrong method), as OpenAI's error object."""
    assert isinstance(exc, HTTPException)
    message = f"{request.method} {request.url.path}: {exc.detail}"
    error = GatewayError(exc.status_code, message, code=_http_code(exc.status_code))
    return JSONResponse(error.body(), status_code=exc.status_code, headers=exc.headers)


async def client_left(request: Request, exc: Exception) -> Response:
    """The client went away before its body arrived: nothing to answer, nothing went wrong."""
    logger.debug("%s %s: the client left before its body arrived", request.method, request.url.path)
    return Response(status_code=CLIENT_CLOSED_REQUEST)


async def failed(request: Request, exc: Exception) -> Response:
    """An error no part expected: a 500 in the same shape (Starlette logs the traceback);
    what the request was charged is given back (`Gateway.abandon`)."""
    Gateway.of(request).abandon(request)
    request_id = getattr(request.state, "request_id", "?")
    error = GatewayError(
        500, f"internal error (request {request_id})", kind="server_error", code="internal_error"
    )
    return JSONResponse(error.body(), status_code=500)


def _http_code(status: int) -> str:
    return {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
