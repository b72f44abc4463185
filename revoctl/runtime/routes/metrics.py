"""``/metrics``: Prometheus text for the whole instance (every worker), no key needed."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from revoctl.runtime.gateway import Gateway
from revoctl.runtime.metrics import CONTENT_TYPE


async def metrics(request: Request) -> Response:
    body = await Gateway.of(request).metrics_text()
    return Response(body, media_type=CONTENT_TYPE)
