"""One lean ASGI middleware for every request: a request id, and a JSON access log line.

Written as plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which costs a
task and a queue per request: at the gateway's rates that overhead would show.
The log line names the caller's key by name (never the key), and goes through the
same redaction as every record.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("revoctl.access")

REQUEST_ID_HEADER = b"x-request-id"
_SAFE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")


class AccessLog:
    """Tags each request with ``x-request-id`` (the caller's, when it is sane) and logs it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"")
        request_id = given.decode() if _SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        scope["state"]["started"] = started  # a refused request's row takes its duration from it
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra=_fields(scope, request_id, status, started),
                )


def _fields(scope: Scope, request_id: str, status: int, started: float) -> dict[str, Any]:
    state = scope.get("state", {})
    client = scope.get("client")
    return {
        "request_id": request_id,
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        "client": client[0] if client else None,
        "key": state.get("key_name"),
        "model": state.get("model"),
    }
