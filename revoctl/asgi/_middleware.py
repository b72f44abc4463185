"""`RateLimitMiddleware`: pure ASGI, for any Starlette or FastAPI app.

It sets the request's client from a trusted proxy's headers (``[gateway]
trusted_proxies``), leaves the app's `AppLimits` in the scope for `rate_limit` and
`check_rate_limit`, renders their refusals (`RateLimited`, raised anywhere inside the app)
as the gateway does, and puts the rules' state headers of every charge on the response.
With ``rule``, it charges every HTTP request on that rule itself, before the app is called.
On the app's lifespan shutdown it closes what it opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request

from revoctl.asgi._limits import CHARGES_KEY, USER_HEADER, AppLimits, RateLimited, current

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from revoctl.config import LoadedConfig
    from revoctl.core.services import Services
    from revoctl.runtime.charges import Charge


class RateLimitMiddleware:
    """``app.add_middleware(RateLimitMiddleware, config="revoctl.toml", rule=None)``.

    ``services`` (the app's own) or ``config``/``profile`` (loaded as the CLI does);
    ``rule``: charge every HTTP request 1 on it; ``user_header``: the header naming the
    end user (``per_user`` rules), None for none.

    :raises ConfigError: the configuration is invalid (at construction).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        rule: str | None = None,
        services: Services | None = None,
        config: str | Path | LoadedConfig | None = None,
        profile: str | None = None,
        user_header: str | None = USER_HEADER,
    ) -> None:
        self.app = app
        self.rule = rule
        self.limits = AppLimits(services, config=config, profile=profile, user_header=user_header)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._closing(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.limits.place(scope)
        token = current.set(self.limits)
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                charges: list[Charge] = scope.get(CHARGES_KEY, [])
                extra = [
                    (name.encode("latin-1"), value.encode("latin-1"))
                    for charge in charges
                    for name, value in charge.headers()
                ]
                if extra:
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            if self.rule is not None:
                await self.limits.charge(Request(scope, receive), self.rule)
            await self.app(scope, receive, send_with_headers)
        except RateLimited as refusal:
            if started:
                raise
            await refusal.response()(scope, receive, send)
        finally:
            current.reset(token)

    def _closing(self, send: Send) -> Send:
        async def send_closing(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.limits.aclose()
            await send(message)

        return send_closing
