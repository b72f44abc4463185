"""The gateway's spans: one server span a request, and one client span a provider call.

`ServerSpans` is plain ASGI, like `revoctl.runtime.middleware.AccessLog`, and is mounted
only when ``[tracing] enabled`` is true (`create_app`): off, a request pays nothing. The
span is named ``METHOD route`` (the route's path pattern; just ``METHOD`` when no route
matched; never the query string or a body), continues the caller's trace when the request
carries a W3C ``traceparent``, and holds the method, route and status; the rate-limit,
breaker, provider, secret and database spans the request causes are its descendants.
`traced_call` puts a provider call (inside its breaker's span) in a ``provider.call`` span
whose ``traceparent`` the adapters send upstream (`revoctl.runtime.providers._http`). The
app's shutdown sends what is still buffered (`revoctl.runtime.app`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from revoctl.core.tracing import client_span, enabled, server_span
from revoctl.runtime.deployments import Deployment

T = TypeVar("T")
P = TypeVar("P")


class ServerSpans:
    """A ``SERVER`` span around each HTTP request: method, route, status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in (b"traceparent", b"tracestate")
        }
        method = scope["method"]
        with server_span(
            method,  # renamed after its route once routed: a raw path is not a name
            headers,
            **{"http.request.method": method, "url.path": scope["path"]},
        ) as span:

            async def send_with_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_with_status)
            finally:
                route = scope.get("route")
                path = getattr(route, "path", None)
                if path is not None:
                    span.set_attribute("http.route", path)
                    span.update_name(f"{method} {path}")


def traced_call(
    attempt: Callable[[P, str], Awaitable[T]], deployment: Deployment
) -> Callable[[P, str], Awaitable[T]]:
    """``attempt`` in a ``provider.call`` span (model, deployment, provider, upstream
    model; the tokens when the answer counts them); ``attempt`` itself when tracing is off."""
    if not enabled():
        return attempt

    async def traced(provider: P, upstream: str) -> T:
        with client_span(
            "provider.call",
            model=deployment.model,
            deployment=deployment.name,
            provider=deployment.provider,
            upstream_model=upstream,
        ) as span:
            answer = await attempt(provider, upstream)
            usage = answer.get("usage") if isinstance(answer, dict) else None
            if isinstance(usage, dict):
                for key in ("prompt_tokens", "completion_tokens"):
                    if isinstance(usage.get(key), int):
                        span.set_attribute(key, usage[key])
            return answer

    return traced
